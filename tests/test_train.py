import dataclasses
import json
import math

import pytest
import torch

import models
from models.loop import Loop, optimizer_step
from models.nets import Dropout, padding_mask
from models.resolve import parse_config
from tests.helpers import tiny_config

TEST_KEYS = {"nll", "ppl", "neg_elbo", "recon", "kl", "mi", "mi_batch", "au"}


def test_train_returns_test_metrics_and_history(tmp_path):
    result = models.train(tiny_config(tmp_path), out_dir=str(tmp_path / "out"))
    assert set(result["test"]) == TEST_KEYS
    assert all(math.isfinite(v) for v in result["test"].values())
    assert [h["epoch"] for h in result["history"]] == [1, 2]
    for key in ("train/loss", "val/neg_elbo", "val/mi", "val/au", "lr", "kl_weight"):
        assert key in result["history"][0]
    # IW-NLL is a tighter bound than the ELBO (up to the single-sample noise of the ELBO).
    assert result["test"]["nll"] <= result["test"]["neg_elbo"] + 0.2
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["test"]["nll"] == pytest.approx(result["test"]["nll"])
    assert (tmp_path / "out" / "checkpoint.pt").exists()


def test_training_reduces_loss(tmp_path):
    cfg = tiny_config(tmp_path, train={"max_epochs": 4, "optimizer": "adam", "lr": 0.01})
    history = models.train(cfg)["history"]
    assert history[-1]["train/loss"] < history[0]["train/loss"]


def test_on_epoch_can_stop_training(tmp_path):
    seen = []
    result = models.train(tiny_config(tmp_path, train={"max_epochs": 5}),
                          on_epoch=lambda report: seen.append(report.validation) or report.validation == 2)
    assert seen == [1, 2] and result["epochs"] == 2 and result["stopped_early"]


@pytest.mark.parametrize("preset", ["vae", "anneal", "fb", "cyclic"])
def test_resume_equals_uninterrupted(tmp_path, preset):
    cfg = models.config.merge(models.preset_config(preset), tiny_config(tmp_path, train={"max_epochs": 3}))
    full = models.train(cfg)
    ckpt = tmp_path / "epoch1.pt"

    def save_first(report):
        if report.validation == 1:
            report.save_checkpoint(str(ckpt))
        return report.validation == 1

    models.train(cfg, on_epoch=save_first)
    resumed = models.train(cfg, resume_from=str(ckpt))
    assert resumed["test"] == pytest.approx(full["test"], rel=1e-6)
    assert [h["train/loss"] for h in resumed["history"]] == pytest.approx(
        [h["train/loss"] for h in full["history"]], rel=1e-6)


def test_lm_baseline_trains_by_the_same_loop(tmp_path):
    result = models.train(models.config.merge(models.preset_config("lm"), tiny_config(tmp_path)))
    test = result["test"]
    assert test["kl"] == 0 and test["au"] == 0
    assert test["nll"] == pytest.approx(test["neg_elbo"])


def test_divergence_is_reported(tmp_path):
    # Adam at an absurd learning rate on an unclipped model overflows within a few steps.
    cfg = tiny_config(tmp_path, train={"optimizer": "adam", "lr": 1e30, "clip_grad": 1e30, "max_epochs": 3})
    with pytest.raises(models.TrainingDiverged, match="training loss became"):
        models.train(cfg)


def test_lr_decays_and_reloads_best(tmp_path):
    cfg = parse_config(tiny_config(tmp_path, train={"patience": 1, "max_decays": 2, "max_epochs": 8,
                                                    "decay_after": 0}))
    loop = Loop(cfg)
    loop.best_val = loop.decay_reference = -math.inf  # nothing will count as an improvement
    loop.best_state = {k: v.clone() for k, v in loop.model.state_dict().items()}
    loop.run()
    assert loop.decays == 2 and loop.finished and loop.epoch == 2
    assert loop.lr == pytest.approx(cfg.train.lr * 0.25)
    for key, value in loop.best_state.items():
        assert torch.equal(loop.model.state_dict()[key], value)


def test_lr_schedule_follows_the_reference_code(tmp_path):
    # He et al.'s text.py: patience 2, no decay before the 16th validation, and after a decay
    # the rule compares with the loss at the decay, not with the best loss.
    loop = Loop(parse_config(tiny_config(tmp_path)))
    assert (loop.cfg.train.patience, loop.cfg.train.decay_after, loop.cfg.train.max_decays) == (2, 15, 5)
    loop.best_state = {k: v.clone() for k, v in loop.model.state_dict().items()}
    decayed_at = []
    for evaluation, loss in enumerate([10.0] + [11.0] * 16 + [10.5, 10.6, 10.7], start=1):
        loop.evaluations = evaluation
        before = loop.decays
        loop._schedule_lr(loss)
        if loop.decays > before:
            decayed_at.append(evaluation)
    # Rises from validation 2 on; the first decay waits for validation 16, the next needs two
    # rises over the loss at that decay (11.0): 10.5 resets the count, 10.6 and 10.7 rise.
    assert decayed_at == [16, 20] and loop.best_val == 10.0


def test_apply_update_clips_all_parameters_jointly(tmp_path):
    # He et al.'s code clips one norm over every parameter, also in encoder-only steps.
    loop = Loop(parse_config(tiny_config(tmp_path, train={"clip_grad": 1e-3})))
    batch = next(loop.shuffled())
    loop.compute_loss(batch)["loss"].backward()
    grads = {name: p.grad.clone() for name, p in loop.model.named_parameters()}
    total = torch.sqrt(sum(g.square().sum() for g in grads.values()))
    enc_before = {name: p.detach().clone() for name, p in loop.model.encoder.named_parameters()}
    loop2 = Loop(loop.cfg)  # the same weights, batch and noise, seeded alike
    loop2.apply_update(loop2.compute_loss(next(loop2.shuffled()))["loss"], encoder=True, decoder=False)
    scale = 1e-3 / (total.item() + 1e-6)
    for name, param in loop2.model.encoder.named_parameters():
        expected = enc_before[name] - loop.cfg.train.lr * scale * grads[f"encoder.{name}"]
        torch.testing.assert_close(param.detach(), expected, rtol=1e-4, atol=1e-7)


def test_encoder_lr_ratio(tmp_path):
    loop = Loop(parse_config(tiny_config(tmp_path, train={"lr": 0.5, "enc_lr_ratio": 4.0})))
    assert loop.dec_optimizer.param_groups[0]["lr"] == 0.5
    assert loop.enc_optimizer.param_groups[0]["lr"] == 2.0


def test_scalar_latent_run_writes_posterior_mean_space_plot(tmp_path):
    models.train(tiny_config(tmp_path, model={"latent_dim": 1}, train={"max_epochs": 1}),
                 out_dir=str(tmp_path / "out"))
    png = tmp_path / "out" / "posterior_mean_space.png"
    assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("pooling", ["last", "mean", "max", "absmax"])
def test_one_length_batches_skip_packing_with_the_loss_bit_for_bit(tmp_path, pooling):
    # The same batch with two more PAD columns takes the general path (packing, masks, ignored
    # targets); without them, the fast path. No dropout, so both draw the same noise.
    cfg = parse_config(tiny_config(tmp_path, model={"pooling": pooling, "dec_dropout_in": 0.0,
                                                    "dec_dropout_out": 0.0}))
    loop = Loop(cfg)
    batch = next(loop.shuffled())
    padded = dataclasses.replace(batch, tokens=torch.nn.functional.pad(batch.tokens, (0, 2)))
    assert padding_mask(batch.tokens, batch.lengths) is None
    assert padding_mask(padded.tokens, padded.lengths) is not None
    results = []
    for b in (batch, padded):
        torch.manual_seed(3)
        terms = loop.compute_loss(b)
        loop.model.zero_grad(set_to_none=True)
        terms["loss"].backward()
        results.append((terms, [p.grad for p in loop.model.parameters()]))
    (fast, fast_grads), (general, general_grads) = results
    for key in ("loss", "recon", "kl"):
        assert torch.equal(fast[key], general[key]), key
    for a, b in zip(fast_grads, general_grads):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("make", [lambda ps: torch.optim.SGD(ps, lr=0.7),
                                  lambda ps: torch.optim.SGD(ps, lr=0.7, momentum=0.9),
                                  lambda ps: torch.optim.Adam(ps, lr=0.1)])
def test_optimizer_step_is_the_optimizers_step_bit_for_bit(make):
    # Plain SGD takes the one-update shortcut; anything else is the optimizer's own step.
    gens = torch.Generator().manual_seed(0)
    start = [torch.randn(shape, generator=gens) for shape in ((5, 3), (7,), (2, 2))]
    grads = [torch.randn_like(t) for t in start]
    stepped = []
    for update in (lambda opt: opt.step(), optimizer_step):
        params = [torch.nn.Parameter(t.clone()) for t in start]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        params[2].grad = None  # a parameter without a gradient is left alone
        opt = make(params)
        for _ in range(2):
            update(opt)
        stepped.append(params)
    for ours, theirs in zip(*stepped):
        assert torch.equal(ours, theirs)
    assert not torch.equal(stepped[0][0], start[0]) and torch.equal(stepped[0][2], start[2])
    optimizer_step(make([torch.nn.Parameter(torch.zeros(2))]))  # a group without gradients: nothing to do


@pytest.mark.parametrize("p", [0.25, 0.5])
def test_cpu_dropout_keeps_one_minus_p_scaled_and_passes_gradients_through_the_mask(p):
    x = torch.rand(200, 500) + 1.0  # no zeros, so a zero in the output is a dropped unit
    x.requires_grad_(True)
    drop = Dropout(p).train()
    torch.manual_seed(0)
    y = drop(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - (1 - p)) < 0.005  # 100k draws: ~5 standard errors
    torch.testing.assert_close(y[kept], (x / (1 - p))[kept])
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() / (1 - p))
    torch.manual_seed(0)
    assert torch.equal(drop(x), y)  # seeded like torch's own dropout
    assert torch.equal(drop.eval()(x), x)
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))  # torch's own edge cases
    assert torch.equal(Dropout(0.0).train()(x), x)
    target = x.detach().clone()
    assert Dropout(p, inplace=True).train()(target).data_ptr() == target.data_ptr()  # as torch's


def test_evaluation_pass_budget_changes_no_metric(tmp_path):
    cfg = tiny_config(tmp_path, train={"max_epochs": 1})
    tiny_passes = models.train(models.config.merge(cfg, {"eval": {"pass_mib": 1e-3}}))["test"]
    assert tiny_passes == pytest.approx(models.train(cfg)["test"], rel=1e-5)
    with pytest.raises(models.ConfigError, match="eval.pass_mib"):
        parse_config(models.config.merge(cfg, {"eval": {"pass_mib": 0}}))


def test_history_reports_gradient_norm_before_clipping_and_clipped_fraction(tmp_path):
    """The clipped fraction says how often the joint clip shrank an update; with a threshold
    far below every norm it is 1, far above every norm 0."""
    tight = models.train(tiny_config(tmp_path, train={"max_epochs": 1, "clip_grad": 1e-6}))["history"][0]
    loose = models.train(tiny_config(tmp_path, train={"max_epochs": 1, "clip_grad": 1e6}))["history"][0]
    assert tight["train/clipped"] == 1.0 and loose["train/clipped"] == 0.0
    assert 0 < loose["train/grad_norm"] < 1e6
    assert tight["train/grad_norm"] > 1e-6
