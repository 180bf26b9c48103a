"""The methods of issue 3, each mechanism directly, plus a contract test over every registered method."""
import math
from types import SimpleNamespace

import pytest
import torch

import models
import models.diagnostics
from models.config import ConfigError
from models.resolve import parse_config
from models.data import load_corpus
from models.loop import Loop
from models.methods import REGISTRY, validate_methods
from models.methods import scale as scale_module
from models.methods.aggressive import AggressiveParams, inner_loop_done
from models.nets import FixedScaleBatchNorm
from models.kl import kl_per_dim
from tests.helpers import tiny_config as config

ADAM = {"optimizer": "adam", "lr": 0.01}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """One corpus cache for the module: generating the synthetic corpus takes seconds."""
    return tmp_path_factory.mktemp("data")


def make_loop(data_dir, methods, **sections) -> Loop:
    return Loop(parse_config(config(data_dir, methods=methods, **sections)))


def method(loop, name):
    return next(m for m in loop.methods if m.name == name)


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before, module):
    return {k for k, v in module.state_dict().items() if not torch.equal(before[k], v)}


# -- aggressive (He et al.) ---------------------------------------------------------

def steps_of(losses, words=1):
    return [(loss, words) for loss in losses]


def test_inner_loop_stops_when_a_window_gets_worse():
    params = AggressiveParams(window=3, cap=100)
    # Windows sum to 12, 3, 3 (no better, not worse: go on), then 4 (worse: stop).
    stops = [n for n in range(13) if inner_loop_done(steps_of([5, 4, 3, 2, 1, 0, 1, 1, 1, 1, 1, 2])[:n], params)]
    assert stops == [12]
    improving = steps_of([10 - 0.01 * i for i in range(200)])
    assert [n for n in range(201) if inner_loop_done(improving[:n], params)][0] == 100  # the cap
    assert AggressiveParams().window == 15  # He et al.'s code: so the rule runs at least 30 steps


def test_inner_loop_compares_loss_per_word_over_a_window():
    params = AggressiveParams(window=2, cap=100)
    # Summed losses rise (10 → 12) but per word they fall (10 / 10 → 12 / 20): go on.
    assert not inner_loop_done([(5.0, 5), (5.0, 5), (6.0, 10), (6.0, 10)], params)
    assert inner_loop_done([(5.0, 5), (5.0, 5), (6.0, 5), (6.0, 5)], params)


def test_inner_loop_budget_overrides_the_rule():
    params = AggressiveParams(budget=7, window=2, cap=5)
    flat = steps_of([1.0] * 10)
    assert [n for n in range(11) if inner_loop_done(flat[:n], params)][0] == 7


@pytest.mark.parametrize("key", ["window", "cap", "budget"])
def test_aggressive_params_are_validated(key):
    with pytest.raises(ConfigError, match=f"methods.aggressive.{key}"):
        validate_methods({"aggressive": {key: 0}})


def test_inner_loop_updates_only_the_encoder(data_dir):
    loop = make_loop(data_dir, {"aggressive": {"budget": 4}})
    agg = method(loop, "aggressive")
    agg.on_epoch_start(loop)
    enc, dec = snapshot(loop.model.encoder), snapshot(loop.model.decoder)
    plan = agg.before_step(loop, next(loop.shuffled()))
    assert not plan.update_encoder and plan.update_decoder
    assert not changed(dec, loop.model.decoder)
    assert "to_posterior.weight" in changed(enc, loop.model.encoder)
    # The first inner step trains on the outer step's own batch (He et al.'s code), then 3 fresh ones.
    assert (agg.inner_steps, agg.consumed) == (4, 3)


EPOCH_END, MID_EPOCH = SimpleNamespace(epoch_batches=0, epoch=3), SimpleNamespace(epoch_batches=7, epoch=4)
"""The loop as the aggressive method's MI check sees it: at an epoch's end, and inside one."""


def test_aggressive_mode_switches_off_when_mi_stops_rising():
    agg = REGISTRY["aggressive"](AggressiveParams())
    seen = []
    for mi in [0.5, 1.0, 1.0, 0.9, 2.0]:
        metrics = {"val/mi": mi}
        agg.after_validation(EPOCH_END, metrics)
        seen.append(metrics["train/aggressive"])
    # An equal MI keeps it on (the reference code stops on a strict fall); then off for good.
    assert seen == [1.0, 1.0, 1.0, 1.0, 0.0] and not agg.active
    assert agg.before_step(None, None) is None  # plain joint updates from then on
    first = REGISTRY["aggressive"](AggressiveParams())
    first.after_validation(EPOCH_END, {"val/mi": -0.01})  # below a fresh model's MI of 0
    assert not first.active


@pytest.mark.parametrize("mi_check,stays_on", [("epoch", True), ("validation", False)])
def test_aggressive_compares_mi_at_epoch_ends_as_he_et_al(mi_check, stays_on):
    # He et al. §4.2 and text.py check once per epoch: a validation inside an epoch
    # (eval.every_steps) whose MI fell does not end aggressive mode, unless told to check there.
    agg = REGISTRY["aggressive"](AggressiveParams(mi_check=mi_check))
    agg.after_validation(EPOCH_END, {"val/mi": 1.0})
    agg.after_validation(MID_EPOCH, {"val/mi": 0.5})
    assert agg.active is stays_on
    agg.after_validation(EPOCH_END, {"val/mi": 0.8})  # below the last MI compared (1.0, or 0.5)
    assert not agg.active


def test_aggressive_needs_validation_mi(data_dir):
    with pytest.raises(ConfigError, match="eval.val_mi"):
        models.train(config(data_dir, methods={"aggressive": {}}, eval={"val_mi": False}))


# -- Scale-VAE (Song et al.) ----------------------------------------------------------

def test_batch_factor_gives_the_desired_std():
    mu = torch.randn(16, 3) * torch.tensor([0.01, 1.0, 5.0])
    factor = scale_module.batch_factor(mu, 0.7)
    assert (mu * factor).std(0, correction=0) == pytest.approx([0.7] * 3, rel=1e-5)
    constant = torch.ones(4, 2)
    assert torch.isfinite(scale_module.batch_factor(constant, 0.7)).all()


def test_within_f_epo_no_gradient_changes_the_spread_of_the_scaled_means():
    # Alg. 1 computes f from the minibatch inside the step: f·μ does not change with the
    # scale of μ, so the gradient has no component along μ in any dimension.
    mu = (torch.randn(16, 3) * torch.tensor([1e-4, 0.1, 2.0])).requires_grad_()
    scaled = mu * scale_module.batch_factor(mu, 0.7)
    (scaled * torch.randn(16, 3)).sum().backward()
    assert (mu.grad * mu).sum(0).abs().max() < 1e-4 * mu.grad.abs().sum(0).max()


def test_scale_reports_its_factor_after_each_validation(data_dir):
    result = models.train(config(data_dir, methods={"scale": {}}))
    factors = [h["diag/scale_factor"] for h in result["history"]]
    assert len(factors) == 2 and all(f > 1 for f in factors)  # f̄ from U(±0.01): μ starts tiny


def test_scale_factors_per_batch_then_the_epoch_average(data_dir, monkeypatch):
    loop = make_loop(data_dir, {"scale": {"des_std": 0.7, "f_epo": 1}})
    sc = method(loop, "scale")
    recorded = []
    real = scale_module.batch_factor
    monkeypatch.setattr(scale_module, "batch_factor", lambda mu, d: recorded.append(real(mu, d)) or recorded[-1])
    mu = torch.randn(8, 2)
    loop.epoch = 1
    loop.train_on(loop.shuffled())
    assert len(recorded) == loop.steps_per_epoch
    assert torch.allclose(loop.model.latent_scale, torch.stack(recorded).mean(0), rtol=1e-6)
    # Still within f_epo: each batch is scaled by its own factor.
    assert sc.decoder_mean(loop, mu).std(0, correction=0) == pytest.approx([0.7, 0.7], rel=1e-5)

    loop.epoch = 2  # after f_epo: every batch uses the previous epoch's average
    sc.on_epoch_start(loop)
    frozen = loop.model.latent_scale.clone()
    assert torch.allclose(sc.decoder_mean(loop, mu), mu * frozen)
    assert torch.allclose(sc.decoder_mean(loop, 3 * mu), 3 * mu * frozen)
    loop.train_on(loop.shuffled())
    # Evaluation reads the factor this epoch's decoder trained with, not the next epoch's in the making.
    assert torch.equal(loop.model.latent_scale, frozen)
    upcoming = sc.factor_sum / sc.count
    loop.epoch = 3
    sc.on_epoch_start(loop)
    assert torch.equal(loop.model.latent_scale, upcoming) and not torch.allclose(upcoming, frozen)


def test_scale_single_sentence_batch_uses_the_running_average(data_dir):
    loop = make_loop(data_dir, {"scale": {}})
    sc = method(loop, "scale")
    loop.epoch = 1
    sc.on_epoch_start(loop)
    sc.decoder_mean(loop, torch.randn(8, 2))
    one = torch.randn(1, 2)
    assert torch.allclose(sc.decoder_mean(loop, one), one * loop.model.latent_scale)
    assert sc.count == 1


def test_scale_keeps_the_kl_of_the_original_posterior(data_dir):
    loop = make_loop(data_dir, {"scale": {"des_std": 0.7}})
    loop.epoch = 1
    method(loop, "scale").on_epoch_start(loop)
    batch = next(loop.shuffled())
    terms = loop.compute_loss(batch)
    mu, logvar = loop.model.encode(batch.tokens, batch.lengths)
    assert torch.allclose(terms["kl"], kl_per_dim(mu, logvar).sum(-1))
    factor = scale_module.batch_factor(mu, 0.7)
    assert not torch.allclose(terms["kl"], kl_per_dim(mu * factor, logvar).sum(-1))


@pytest.mark.parametrize("key,value", [("des_std", 0.0), ("f_epo", 0)])
def test_scale_params_are_validated(key, value):
    with pytest.raises(ConfigError, match=f"methods.scale.{key}"):
        validate_methods({"scale": {key: value}})


# -- encoder pretraining (Li et al.) -------------------------------------------------

def test_pretraining_keeps_the_encoder_and_reinitialises_the_decoder(data_dir, monkeypatch):
    loop = make_loop(data_dir, {"pretrain": {"epochs": 2}}, train=ADAM)
    pre = method(loop, "pretrain")
    enc_init = snapshot(loop.model.encoder)
    pretrained = {}
    real = pre._pretrain
    monkeypatch.setattr(pre, "_pretrain", lambda lp: (real(lp), pretrained.update(snapshot(lp.model.decoder))))
    old_optimizer = loop.enc_optimizer
    pre.before_training(loop)
    assert not pre.cached and len(pre.recon) == 2 and pre.recon[1] < pre.recon[0]
    assert "to_posterior.weight" in changed(enc_init, loop.model.encoder)
    for name, param in loop.model.decoder.named_parameters():
        bound = 0.1 if "embed" in name else 0.01
        assert param.abs().max() <= bound, name
        assert not torch.equal(param, pretrained[name]), name
    assert loop.step == 0 and loop.kl_weight_override is None
    assert loop.enc_optimizer is not old_optimizer and not loop.enc_optimizer.state
    assert loop.methods == [pre]


def test_pretrained_encoder_is_cached_and_reused(tmp_path):
    cfg = config(tmp_path, methods={"pretrain": {"epochs": 1}}, train={"max_epochs": 1})
    load_corpus(parse_config(cfg).data)  # generate the corpus first: only the encoder cache is under test
    first = models.train(cfg)
    second = models.train(cfg)
    assert first["history"][0]["train/pretrain_cached"] == 0.0
    assert second["history"][0]["train/pretrain_cached"] == 1.0
    assert second["test"] == pytest.approx(first["test"], rel=1e-6)  # reuse changes nothing
    assert len(list((tmp_path / "pretrain").glob("*.pt"))) == 1
    # Trials differing only after pretraining (the KL objective) share it; a new seed does not.
    fb = models.config.merge(cfg, {"kl": {"free_bits": {"kind": "fb", "lam": 1.0}}})
    assert models.train(fb)["history"][0]["train/pretrain_cached"] == 1.0
    assert models.train({**cfg, "seed": 1})["history"][0]["train/pretrain_cached"] == 0.0


# -- BN-VAE (Zhu et al.) -----------------------------------------------------------------

def test_bn_gamma_stays_fixed_and_beta_learns(data_dir):
    loop = make_loop(data_dir, {"bn": {"gamma": 0.6}}, train=ADAM)
    bn = loop.model.encoder.mu_transform
    assert isinstance(bn, FixedScaleBatchNorm)
    assert "mu_transform.gamma" not in dict(loop.model.encoder.named_parameters())
    beta = bn.beta.detach().clone()
    loop.train_on(loop.shuffled())
    assert torch.equal(bn.gamma, torch.full((2,), 0.6))
    assert not torch.equal(bn.beta, beta)


def test_bn_encoder_keeps_pytorch_default_init(data_dir):
    # The BN-VAE authors' code: the encoder is not re-initialised U(±0.01) (the decoder is).
    loop = make_loop(data_dir, {"bn": {}})
    assert loop.model.encoder.embed.weight.std().item() == pytest.approx(1.0, rel=0.1)  # N(0, 1)
    assert loop.model.encoder.lstm.weight_hh_l0.abs().max().item() > 0.1  # U(±1/√H), H = 8
    assert all(p.abs().max() <= 0.1 for p in loop.model.decoder.parameters())
    plain = make_loop(data_dir, {})
    assert plain.model.encoder.lstm.weight_hh_l0.abs().max().item() <= 0.01


def test_bn_normalises_with_batch_then_running_statistics():
    bn = FixedScaleBatchNorm(3, gamma=0.5)
    with torch.no_grad():
        bn.beta.fill_(0.2)
    x = torch.randn(64, 3) * 4 + 1
    out = bn(x).detach()
    assert out.std(0, correction=0) == pytest.approx([0.5] * 3, rel=1e-3)
    assert out.mean(0) == pytest.approx([0.2] * 3, abs=1e-5)
    assert bn(x[:1]).shape == (1, 3)  # a one-sentence training batch does not fail
    bn.eval()
    expected = 0.5 * (x - bn.running_mean) / (bn.running_var + bn.eps).sqrt() + 0.2
    assert torch.allclose(bn(x), expected, atol=1e-6)


# -- resume and the contract over every method ---------------------------------------------

@pytest.mark.parametrize("every_steps", [None, 6], ids=["per-epoch", "mid-epoch"])
@pytest.mark.parametrize("methods", [{"aggressive": {"budget": 3}}, {"scale": {"f_epo": 1}}])
def test_resume_mid_method_equals_uninterrupted(data_dir, tmp_path, methods, every_steps):
    # 10 batches an epoch: with a validation every 6 updates the checkpoint falls mid-epoch.
    # Seed 4: a run whose MI still climbs after its first epoch, so that the resumed run starts
    # in aggressive mode (asserted below; at this size MI's first fall is a matter of rounding).
    cfg = config(data_dir, methods=methods, train={"max_epochs": 3, **ADAM}, seed=4,
                 eval={"iw_samples": 5, "iw_batch": 5, "every_steps": every_steps})
    full = models.train(cfg)
    assert len(full["history"]) == (3 if every_steps is None else 5)
    ckpt = tmp_path / "first.pt"

    def save_first(report):
        report.save_checkpoint(str(ckpt))
        return True

    models.train(cfg, on_epoch=save_first)
    if "aggressive" in methods:  # still aggressive when the checkpoint was taken
        assert [h["train/aggressive"] for h in full["history"][:2]] == [1.0, 1.0]
    resumed = models.train(cfg, resume_from=str(ckpt))
    assert resumed["test"] == pytest.approx(full["test"], rel=1e-6)
    for key in full["history"][-1]:
        if key != "epoch_time":
            assert [h[key] for h in resumed["history"]] == pytest.approx([h[key] for h in full["history"]],
                                                                            rel=1e-6), key


FAST = {"aggressive": {"window": 2, "cap": 6}, "pretrain": {"epochs": 1}}
"""Defaults, shortened where a default would make the tiny run slow."""
EXTRA_METRICS = {"aggressive": ("train/aggressive", "train/inner_steps"),
                 "pretrain": ("train/pretrain_recon", "train/pretrain_cached"),
                 "scale": ("diag/scale_factor", "diag/scale_mu_std", "diag/scale_signal_to_noise"),
                 "bn": ("diag/bn_spread_min", "diag/bn_spread_median", "diag/bn_defeated")}


def _combo(*names, **sections):
    return {"methods": {n: FAST.get(n, {}) for n in names}, **sections}


validate_methods({})  # load the registry, so the contract covers every registered method
CASES = [_combo(name) for name in sorted(REGISTRY)] + [
    _combo("aggressive", kl={"free_bits": {"kind": "fb", "lam": 1.0}}),
    _combo("scale", model={"pooling": "max"}),
    _combo("pretrain", "bn", kl={"anneal": "linear", "start": 0.0, "epochs": 1.0}),
    _combo("aggressive", "scale", "bn", kl={"weight": 0.5}),
    _combo("pretrain", "aggressive", "scale"),
]


@pytest.mark.parametrize("sections", CASES, ids=lambda s: "+".join(s["methods"]) + "".join(
    f"-{k}" for k in s if k != "methods"))
def test_every_method_trains_alone_and_combined(data_dir, sections):
    seen = []
    result = models.train(config(data_dir, **sections), on_epoch=lambda r: seen.append(r.loop))
    assert all(math.isfinite(v) for v in result["test"].values())
    for epoch in result["history"]:
        assert all(math.isfinite(v) for v in epoch.values())
    names = sections["methods"]
    for name in names:
        for key in EXTRA_METRICS.get(name, ()):
            assert key in result["history"][0], key
        if name in ("aggressive", "bn", "scale"):  # each says in the run's verdict whether it held
            assert f"{name}: " in result["verdict"], result["verdict"]
    model = seen[-1].model
    if "scale" in names:
        assert not torch.equal(model.latent_scale, torch.ones(2))
    if "bn" in names:
        assert torch.equal(model.encoder.mu_transform.gamma, torch.full((2,), 0.6))


@pytest.mark.parametrize("preset", sorted(models.PRESETS))
def test_every_metric_describes_one_model_iw_nll_below_its_elbo(preset, data_dir):
    # The IW estimate bounds log p(x) more tightly than the ELBO of the same model and proposal
    # (Burda et al.): above it, the two would describe different models (Scale-VAE's did).
    cfg = models.config.merge(models.preset_config(preset), config(data_dir, eval={"iw_samples": 40, "iw_batch": 20}))
    test = models.train(cfg)["test"]
    for suffix in ("", "_dec") if preset == "scale" else ("",):
        assert test[f"nll{suffix}"] <= test[f"neg_elbo{suffix}"] + 0.02 * abs(test[f"neg_elbo{suffix}"]), suffix


@pytest.mark.parametrize("variance,says", [(1e-9, "bn: normalisation defeated (spread < √ε in 2/2 dims)"),
                                           (0.5, "bn: normalisation holds")])
def test_a_bn_vae_defeated_by_its_epsilon_says_so(data_dir, variance, says):
    # A zero spread of μ before the normalisation makes BN-VAE output β: its KL floor never binds,
    # and the run must not read like a VAE that collapsed on its own.
    loop = make_loop(data_dir, {"bn": {}})
    loop.model.encoder.mu_transform.running_var.fill_(variance)
    diag = method(loop, "bn").diagnose(loop, None, None)
    assert diag["diag/bn_defeated"] == (1.0 if variance < 1e-5 else 0.0)
    assert diag["diag/bn_spread_min"] == pytest.approx(variance ** 0.5)
    assert method(loop, "bn").verdict(loop).startswith(says)


def test_the_verdict_says_collapsed_or_active_and_free_bits_hold(data_dir):
    loop = make_loop(data_dir, {}, kl={"free_bits": {"kind": "fb", "lam": 2.0}})
    loop.history.append({"val/neg_elbo": 50.0, **models.diagnostics.collapse_diagnostics(loop)})
    assert 0.0 <= loop.history[-1]["diag/fb_at_hinge"] <= 1.0 and loop.history[-1]["diag/fb_sigma"] > 0
    collapsed = models.diagnostics.verdict(loop, {"au": 0.0, "kl": 0.002, "mi": 0.0})
    assert collapsed.startswith("collapsed: AU 0/2, KL 0.002") and "fb: " in collapsed
    assert models.diagnostics.verdict(loop, {"au": 2.0, "kl": 3.0, "mi": 1.5}).startswith(
        "latent active: AU 2/2, MI 1.50, KL 3;")
    # Information through means that vary below the AU threshold is not a collapse.
    assert models.diagnostics.verdict(loop, {"au": 0.0, "kl": 0.06, "mi": 1.44}).startswith(
        "no active unit yet MI 1.44: the posterior means vary below the AU threshold (0.01)")


@pytest.mark.parametrize("factor, says", [(4.1, "scale: median f̄ 4.1,"),
                                          (947.0, "scale: factor ran away, median f̄ 947,")])
def test_a_scale_vae_whose_factor_ran_away_says_so(data_dir, factor, says):
    loop = make_loop(data_dir, {"scale": {}})
    loop.history.append({"val/neg_elbo": 50.0, "diag/scale_factor": factor, "diag/scale_mu_std": 0.7 / factor,
                         "diag/scale_signal_to_noise": 0.35})
    assert method(loop, "scale").verdict(loop).startswith(says)


def test_the_verdict_describes_the_tested_model_not_the_last_epoch(data_dir):
    # test() evaluates the best validation's weights; a factor that ran away after it is not the
    # tested model's (the synthetic table's Scale-VAE seed 2: AU 31 at test, Std[μ] 2e-4 at the end).
    loop = make_loop(data_dir, {"scale": {}})
    for neg_elbo, factor in [(52.0, 3.0), (48.0, 4.1), (48.0, 5.0), (49.0, 947.0)]:
        loop.history.append({"val/neg_elbo": neg_elbo, "diag/scale_factor": factor,
                             "diag/scale_mu_std": 0.7 / factor, "diag/scale_signal_to_noise": 0.35})
    assert loop.tested_validation()["diag/scale_factor"] == 4.1
    assert method(loop, "scale").verdict(loop).startswith("scale: median f̄ 4.1,")


def test_bn_vae_takes_its_epsilon_and_initialisation_from_the_config(data_dir):
    loop = make_loop(data_dir, {"bn": {"eps": 1e-12, "encoder_init": "uniform"}})
    layer = loop.model.encoder.mu_transform
    assert layer.eps == 1e-12 and method(loop, "bn").diagnose(loop, None, None)["diag/bn_defeated"] == 0.0
    # He et al.'s U(−0.01, 0.01) kept: every encoder weight within it (PyTorch's default would not be).
    assert all(p.abs().max() <= 0.1 for n, p in loop.model.encoder.named_parameters() if "embed" not in n)
    assert all(p.abs().max() <= 0.01 for n, p in loop.model.encoder.lstm.named_parameters())
    with pytest.raises(ConfigError, match="methods.bn.eps: must be positive"):
        validate_methods({"bn": {"eps": 0.0}})
