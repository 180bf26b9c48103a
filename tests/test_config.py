import pytest

from models.config import ConfigError, parse_config, set_dotted
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
