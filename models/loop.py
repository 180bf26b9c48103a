"""The one training loop every method runs on.

Methods (models/methods) plug in through hooks; loss-only settings (KL schedule,
free bits, β) live in models/kl.py. The optimisation follows He et al.
App. B and F: separate encoder and decoder optimisers, gradient clipping, the
learning rate halved when validation loss stalls, with the best model reloaded.
"""
from __future__ import annotations

import copy
import itertools
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from models import metrics as M
from models.config import Config, to_dict
from models.data import load_corpus
from models.diagnostics import collapse_diagnostics
from models.methods import StepPlan, build_methods
from models.nets import build_model
from models.kl import kl_per_dim, kl_term, kl_weight


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class EpochReport:
    """What `on_epoch` receives after each validation."""
    validation: int
    """The validation's number, 1, 2, ...: the epoch's under the default rhythm of one validation
    per epoch (`Loop.epoch` counts epochs started, which `eval.every_steps` makes differ)."""
    metrics: dict[str, float]
    loop: "Loop" = field(repr=False)

    def save_checkpoint(self, path: str) -> None:
        """Write the full training state to `path` (a file)."""
        self.loop.save(path)


@dataclass(frozen=True)
class EvaluationProgress:
    """What `on_test` receives as the test evaluation's IW-NLL passes each tenth of the split."""
    sentences: int
    """Test sentences scored so far."""
    total: int
    """Sentences in the test split."""
    seconds: float
    """Since the test evaluation began."""

    @property
    def fraction(self) -> float:
        return self.sentences / self.total


def optimizer_step(optimizer: torch.optim.Optimizer) -> None:
    """`optimizer.step()`; plain SGD (no momentum, as every SGD here) as one foreach update per
    group: the same arithmetic without the optimizer's per-call bookkeeping. Kept because it
    gained ≥ 5 % in one run of the training step at the synthetic profile's batch 16 against
    `torch.optim.SGD(foreach=True)` (1.19×; 1.04× at batch 32: `train_throughput.py --only
    handwritten`, docs/benchmarks.md, 2026-12-07, a loaded machine)."""
    plain = type(optimizer) is torch.optim.SGD and all(
        not g["momentum"] and not g["weight_decay"] and not g["maximize"] for g in optimizer.param_groups)
    if not plain:
        optimizer.step()
        return
    with torch.no_grad():
        for group in optimizer.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                torch._foreach_add_(params, [p.grad for p in params], alpha=-group["lr"])


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def available_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class Loop:
    """One training run of a config: its corpus, model, methods, optimisers and every counter a
    checkpoint restores (`save`, `load`).

    `run` trains: `interval_batches` up to each validation, `train_on` an update per batch with
    the methods' hooks, then `validate` and the learning-rate schedule; `test` evaluates the
    best model. `step` counts updates, `epoch` epochs started, `evaluations` validations.
    """

    def __init__(self, cfg: Config):
        self.cfg = cfg
        torch.set_num_threads(cfg.threads or available_cpus())
        self.device = resolve_device(cfg.device)
        self.corpus = load_corpus(cfg.data)
        # Seed after loading: generating the corpus on a cache miss must not change the run.
        torch.manual_seed(cfg.seed)
        self.methods = build_methods(cfg.methods)
        model = build_model(cfg.model, len(self.corpus.vocab))
        for method in self.methods:
            method.on_build(model)
        self.model = model.to(self.device)
        self.is_vae = self.model.is_vae
        self.lr = cfg.train.lr
        self.build_optimizers()
        self.shuffle_generator = torch.Generator().manual_seed(cfg.seed)
        self.steps_per_epoch = sum(1 for _ in self.corpus.train.batches(cfg.data.batch_size, shuffle=False))
        self.total_steps = self.steps_per_epoch * cfg.train.max_epochs
        self.kl_weight_override: float | None = None
        self.step = 0
        self.epoch = 0  # epochs started
        self.epoch_batches = 0  # batches of the current epoch done
        self.epoch_rng_state: torch.Tensor | None = None  # shuffle state the epoch's order came from
        self._epoch_iter = None
        self.evaluations = 0
        self.history: list[dict] = []
        self.best_val = math.inf
        self.best_state: dict | None = None
        self.decay_reference = math.inf
        self.not_improved = 0
        self.decays = 0
        self.finished = False
        self.elapsed = 0.0

    # -- parameters and updates -------------------------------------------------
    def build_optimizers(self) -> None:
        """Fresh encoder and decoder optimisers at the current learning rate (He et al. App. F)."""
        train = self.cfg.train
        # Listed once: walking the module tree twice a step costs a small model ~1 % of it.
        self.parameters = list(self.model.parameters())
        make = {"sgd": lambda params, lr: torch.optim.SGD(params, lr=lr),
                "adam": lambda params, lr: torch.optim.Adam(params, lr=lr)}[train.optimizer]
        self.dec_optimizer = make(self.model.decoder.parameters(), self.lr)
        self.enc_optimizer = (make(self.model.encoder.parameters(), self.lr * train.enc_lr_ratio)
                              if self.is_vae else None)

    def current_kl_weight(self) -> float:
        if self.kl_weight_override is not None:
            return self.kl_weight_override
        return kl_weight(self.cfg.kl, self.step, self.steps_per_epoch, self.total_steps)

    def compute_loss(self, batch) -> dict[str, torch.Tensor]:
        """Per-sentence loss terms of one batch; `loss` is the mean to minimise."""
        tokens, lengths = batch.tokens, batch.lengths
        if not self.is_vae:
            nll = -self.model.log_prob(tokens, lengths)
            return {"loss": nll.mean(), "recon": nll, "kl": torch.zeros_like(nll)}
        mu, logvar = self.model.encode(tokens, lengths)
        mu_dec = mu * self.model.latent_scale
        for method in self.methods:
            scaled = method.decoder_mean(self, mu)
            if scaled is not None:
                mu_dec = scaled
        z = mu_dec + torch.randn_like(mu) * (0.5 * logvar).exp()  # the decoder's input, f·μ + σε
        recon = -self.model.decoder.log_prob(tokens, lengths, z.unsqueeze(1)).squeeze(1)
        kl_dims = kl_per_dim(mu, logvar)
        loss = (recon + self.current_kl_weight() * kl_term(self.cfg.kl, kl_dims)).mean()
        return {"loss": loss, "recon": recon, "kl": kl_dims.sum(-1)}

    def apply_update(self, loss: torch.Tensor, encoder: bool = True, decoder: bool = True) -> torch.Tensor:
        """One optimiser step on the chosen parameter groups, gradients clipped (5.0 in the papers);
        returns the gradient norm before clipping."""
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"training loss became {loss.item()} at epoch {self.epoch}, step {self.step}")
        chosen = [opt for opt, use in ((self.enc_optimizer, encoder), (self.dec_optimizer, decoder))
                  if use and opt is not None]
        for param in self.parameters:  # both optimisers' zero_grad, without their per-call bookkeeping
            param.grad = None
        loss.backward()
        # One norm over every parameter, also when one group is stepped (He et al.'s code).
        norm = torch.nn.utils.clip_grad_norm_(self.parameters, self.cfg.train.clip_grad)
        for opt in chosen:
            optimizer_step(opt)
        return norm

    # -- training -----------------------------------------------------------------
    def shuffled(self):
        """The training split once, in a shuffled order drawn from the loop's own generator."""
        for batch in self.corpus.train.batches(self.cfg.data.batch_size, shuffle=True, generator=self.shuffle_generator,
                                               regroup=self.cfg.data.batch_order == "regroup"):
            yield batch.to(self.device)

    def train_on(self, batches) -> dict[str, float]:
        """One update per batch, with the methods' hooks; the mean loss terms per sentence, the
        mean gradient norm before clipping and the fraction of updates clipped (a run whose
        updates are mostly clipped trains at a smaller step than its learning rate says)."""
        self.model.train()
        totals = {"loss": 0.0, "recon": 0.0, "kl": 0.0}
        sentences = 0
        norms = []
        for batch in batches:
            plan = StepPlan()
            for method in self.methods:
                restriction = method.before_step(self, batch)
                if restriction is not None:
                    plan.update_encoder &= restriction.update_encoder
                    plan.update_decoder &= restriction.update_decoder
            terms = self.compute_loss(batch)
            norms.append(self.apply_update(terms["loss"], plan.update_encoder, plan.update_decoder))
            self.step += 1
            size = batch.tokens.size(0)
            sentences += size
            totals["loss"] += terms["loss"].item() * size
            totals["recon"] += terms["recon"].sum().item()
            totals["kl"] += terms["kl"].sum().item()
        metrics = {f"train/{key}": value / max(sentences, 1) for key, value in totals.items()}
        if norms:
            stacked = torch.stack(norms)  # one transfer for the interval, not one per update
            metrics["train/grad_norm"] = stacked.mean().item()
            metrics["train/clipped"] = (stacked > self.cfg.train.clip_grad).float().mean().item()
        return metrics

    def interval_batches(self):
        """Training batches up to the next validation: the rest of the epoch, or with
        `eval.every_steps` up to the next multiple of it, across epoch boundaries.

        An epoch's order is drawn from the shuffle generator's state at its start, kept with
        the batches done, so a run resumed mid-epoch redraws the same order and skips ahead."""
        every = self.cfg.eval.every_steps
        while self.step < self.total_steps:
            if self.epoch_batches == 0 and self._epoch_iter is None:
                self.epoch += 1
                self.epoch_rng_state = self.shuffle_generator.get_state()
                for method in self.methods:
                    method.on_epoch_start(self)
            if self._epoch_iter is None:
                self.shuffle_generator.set_state(self.epoch_rng_state)
                self._epoch_iter = itertools.islice(self.shuffled(), self.epoch_batches, None)
            yield next(self._epoch_iter)
            self.epoch_batches += 1
            if self.epoch_batches == self.steps_per_epoch:
                self.epoch_batches, self._epoch_iter = 0, None
                if every is None:
                    return
            if every is not None and self.step % every == 0:
                return

    def eval_generator(self, salt: int) -> torch.Generator:
        """A generator for evaluation samples, so evaluation never moves the training RNG."""
        return torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + salt)

    def validate(self) -> dict[str, float]:
        ev = self.cfg.eval
        values = M.evaluate(self.model, self.corpus.valid, ev, batch_size=self.cfg.data.batch_size,
                            device=self.device, generator=self.eval_generator(self.evaluations),
                            iw=False, mi=ev.val_mi)
        return {f"val/{key}": value for key, value in values.items()}

    def _schedule_lr(self, val_loss: float) -> None:
        """Learning-rate decay with best-model reload, as He et al.'s reference code (text.py):
        the best model is kept on every improvement; the decay rule compares with its own
        reference loss (the last validation that did not rise, or the one at the last decay),
        decays after `patience` rises in a row but never in the first `decay_after` validations,
        and training stops at the `max_decays`-th decay."""
        train = self.cfg.train
        if val_loss < self.best_val:
            self.best_val = val_loss
            self.best_state = copy.deepcopy(self.model.state_dict())
        if val_loss <= self.decay_reference:
            self.decay_reference, self.not_improved = val_loss, 0
            return
        self.not_improved += 1
        if self.not_improved >= train.patience and self.evaluations > train.decay_after:
            self.decay_reference, self.not_improved = val_loss, 0
            self.decays += 1
            self.lr *= train.decay_factor
            self.model.load_state_dict(self.best_state)
            self.build_optimizers()
            if self.decays >= train.max_decays:
                self.finished = True

    def run(self, on_epoch: Callable[[EpochReport], bool | None] | None = None) -> bool:
        """Train until max_epochs, max_decays, or `on_epoch` returns True (then returns True).

        `on_epoch` is called after every validation: once per epoch, or every
        `eval.every_steps` updates."""
        if self.step == 0 and self.evaluations == 0:
            for method in self.methods:
                method.before_training(self)
        while self.step < self.total_steps and not self.finished:
            start = time.perf_counter()
            metrics = self.train_on(self.interval_batches())
            self.evaluations += 1
            metrics.update(self.validate())
            metrics.update(collapse_diagnostics(self))
            metrics.update(lr=self.lr, kl_weight=self.current_kl_weight(), step=float(self.step))
            for method in self.methods:
                method.after_validation(self, metrics)
            self._schedule_lr(metrics["val/neg_elbo"])
            metrics["epoch_time"] = time.perf_counter() - start  # since the previous validation
            self.elapsed += metrics["epoch_time"]
            self.history.append({"epoch": self.evaluations, **metrics})
            if on_epoch is not None and on_epoch(EpochReport(self.evaluations, metrics, self)):
                return True
        return False

    def tested_validation(self) -> dict[str, float]:
        """The validation of the weights `test` evaluates: the lowest −ELBO, the first of equals, as
        `_schedule_lr` keeps them; so that a verdict's diagnostics describe the model tested, not
        the last epoch's. With no finite validation test() keeps the last weights, so the last."""
        kept = [record for record in self.history if record["val/neg_elbo"] < math.inf]
        if not kept:
            return self.history[-1] if self.history else {}
        return min(kept, key=lambda record: record["val/neg_elbo"])

    def test(self, on_test: Callable[[EvaluationProgress], None] | None = None) -> dict[str, float]:
        """Test metrics of the best model (the one the learning-rate schedule kept); `on_test`
        sees the IW-NLL's progress (`EvaluationProgress`)."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        start = time.perf_counter()
        progress = None if on_test is None else (
            lambda scored, total: on_test(EvaluationProgress(scored, total, time.perf_counter() - start)))
        return M.evaluate(self.model, self.corpus.test, self.cfg.eval, batch_size=self.cfg.data.batch_size,
                          device=self.device, generator=self.eval_generator(-1), on_progress=progress)

    # -- checkpoints --------------------------------------------------------------
    def save(self, path: str) -> None:
        state = {
            "model": self.model.state_dict(), "dec_optimizer": self.dec_optimizer.state_dict(),
            "enc_optimizer": self.enc_optimizer.state_dict() if self.enc_optimizer else None,
            "methods": {m.name: m.state_dict() for m in self.methods},
            "rng": torch.get_rng_state(), "shuffle_rng": self.shuffle_generator.get_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "config": to_dict(self.cfg),
        }
        state.update({key: getattr(self, key) for key in _SCALARS})
        tmp = f"{path}.tmp"
        torch.save(state, tmp)
        os.replace(tmp, path)  # a crash mid-write never leaves a torn checkpoint

    def load(self, path: str) -> None:
        state = torch.load(path, map_location=self.device, weights_only=False)
        for key in _SCALARS:
            setattr(self, key, state[key])
        self._epoch_iter = None  # redrawn from epoch_rng_state
        self.model.load_state_dict(state["model"])
        self.build_optimizers()
        self.dec_optimizer.load_state_dict(state["dec_optimizer"])
        if self.enc_optimizer is not None:
            self.enc_optimizer.load_state_dict(state["enc_optimizer"])
        for method in self.methods:
            method.load_state_dict(state["methods"].get(method.name, {}))
        torch.set_rng_state(state["rng"])
        self.shuffle_generator.set_state(state["shuffle_rng"])
        if state["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])


_SCALARS = ("step", "epoch", "epoch_batches", "epoch_rng_state", "evaluations", "history", "best_val",
            "best_state", "decay_reference", "not_improved", "decays", "finished", "lr", "elapsed")
