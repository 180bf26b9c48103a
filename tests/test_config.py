import pytest

from models.config import ConfigError, set_dotted, to_dict

from models.resolve import parse_config
from models.presets import PRESETS, preset_config


def test_defaults_parse():
    cfg = parse_config({})
    assert cfg.model.latent_dim == 32 and cfg.train.optimizer == "sgd"


@pytest.mark.parametrize("data, key", [
    ({"modle": {}}, "modle"),
    ({"model": {"latent": 3}}, "model.latent"),
    ({"model": {"latent_dim": "big"}}, "model.latent_dim"),
    ({"train": {"lr": "fast"}}, "train.lr"),
    ({"model": {"pooling": "median"}}, "model.pooling"),
    ({"kl": {"free_bits": {"kind": "fb", "lam": 0}}}, "kl.free_bits.lam"),
    ({"model": {"dec_dropout_in": 1.5}}, "model.dec_dropout_in"),
    ({"methods": {"no_such_method": {}}}, "methods.no_such_method"),
    ({"train": {"max_epochs": True}}, "train.max_epochs"),
])
def test_bad_config_names_the_key(data, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_config(data)


def test_ints_accepted_for_floats_and_whole_floats_for_ints():
    cfg = parse_config({"train": {"lr": 1, "max_epochs": 3.0}})
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.train.max_epochs == 3 and isinstance(cfg.train.max_epochs, int)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_a_valid_config(name):
    parse_config(preset_config(name))


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        preset_config("nope")


def test_set_dotted_creates_levels():
    data = {}
    set_dotted(data, "kl.free_bits.lam", 3.0)
    assert data == {"kl": {"free_bits": {"lam": 3.0}}}


def test_methods_need_a_vae():
    with pytest.raises(ConfigError, match="methods.scale: needs an encoder"):
        parse_config({"model": {"kind": "lm"}, "methods": {"scale": {}}})


# -- issue 9: the papers' defaults ------------------------------------------------------

def test_synthetic_corpus_defaults_to_he_et_al_synthetic_config():
    cfg = parse_config({})  # App. B.1 and config_synthetic.py
    assert cfg.profile == "synthetic" and cfg.data.synthetic_sentences == 20000
    assert cfg.data.batch_size == 16 and cfg.train.max_epochs == 50
    assert (cfg.model.enc_hidden, cfg.model.dec_hidden, cfg.model.enc_emb_dim, cfg.model.dec_emb_dim) == (50,) * 4
    assert (cfg.model.dec_dropout_in, cfg.model.dec_dropout_out) == (0.5, 0.5)


@pytest.mark.parametrize("data, profile, hidden, batch", [
    ({"data": {"name": "corpora/ptb"}}, "ptb", 256, 32),
    ({"data": {"name": "x", "train": "/d/yahoo.train.txt"}}, "yahoo", 1024, 32),
    ({"data": {"name": "corpora/Yelp"}}, "yelp", 1024, 32),
    ({"data": {"name": "corpora/mine"}}, "none", 50, 32),
    ({"data": {"name": "corpora/mine"}, "profile": "ptb"}, "ptb", 256, 32),  # chosen by one option
    ({"profile": "none"}, "none", 50, 32),
])
def test_line_corpora_take_their_papers_sizes(data, profile, hidden, batch):
    cfg = parse_config(data)
    assert (cfg.profile, cfg.model.dec_hidden, cfg.data.batch_size) == (profile, hidden, batch)


def test_explicit_values_override_the_profile_and_the_resolved_profile_is_recorded():
    cfg = parse_config({"data": {"batch_size": 64}, "model": {"dec_dropout_in": 0.0}})
    assert cfg.data.batch_size == 64 and cfg.model.dec_dropout_in == 0.0 and cfg.model.dec_dropout_out == 0.5
    again = parse_config(to_dict(cfg))
    assert again == cfg and again.profile == "synthetic"


@pytest.mark.parametrize("data, key", [
    ({"profile": "imdb"}, "profile"),
    ({"eval": {"every_steps": 0}}, "eval.every_steps"),
    ({"train": {"decay_after": -1}}, "train.decay_after"),
    ({"train": {"patience": 0}}, "train.patience"),
])
def test_bad_schedule_settings_name_the_key(data, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_config(data)


def test_presets_follow_the_papers():
    pooled = [parse_config(preset_config(name)) for name in ("pool-max", "pool-avg", "pool-abs")]
    assert all(cfg.kl.anneal == "linear" for cfg in pooled)  # Long et al. §5
    scale = parse_config(preset_config("scale"))
    assert scale.kl.anneal == "linear" and scale.kl.start == 0.0  # Song et al. §4.1: from 0
    assert parse_config(preset_config("bn")).methods["bn"].gamma == 0.6  # Song et al. Table 1
    assert parse_config(preset_config("aggressive")).methods["aggressive"].window == 15


@pytest.mark.parametrize("profile,expected", [
    ("synthetic-he", {"latent_dim": 2, "batch_size": 16, "max_epochs": 50, "patience": 2}),  # config_synthetic.py
    ("synthetic-song", {"latent_dim": 2, "batch_size": 32, "max_epochs": 120, "patience": 5})])  # Song §4.4, §4.1
def test_the_papers_synthetic_settings_are_profiles(profile, expected):
    cfg = parse_config({"profile": profile})
    got = {"latent_dim": cfg.model.latent_dim, "batch_size": cfg.data.batch_size,
           "max_epochs": cfg.train.max_epochs, "patience": cfg.train.patience}
    assert got == expected and cfg.model.enc_hidden == cfg.model.dec_hidden == 50 and cfg.profile == profile
    assert parse_config({}).model.latent_dim == 32  # the `synthetic` profile keeps the text experiments' 32
