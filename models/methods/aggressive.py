"""Aggressive inference-network training (He et al. 2019, Alg. 1, §4.2, §6.5).

While aggressive mode is on, every decoder update is preceded by an inner loop
of encoder-only updates, the first on the outer step's own minibatch and the
rest on fresh ones, run until the loss stops improving (or for a fixed budget);
the loop's own step then updates only the decoder. Aggressive mode ends for
good at the first epoch's end whose validation mutual information is lower than
the previous one's (`mi_check`). The numbers follow the reference code that produced the
paper's results (text.py): windows of 15 steps, at most 100.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Sequence

from models.config import ConfigError
from models.methods import register
from models.methods.base import Method, StepPlan

if TYPE_CHECKING:
    import torch


@dataclass
class AggressiveParams:
    budget: int | None = None
    """Fixed number of inner encoder updates (He et al. Table 4 sweeps 10–70); None stops by the rule."""
    window: int = 15
    """Stopping rule: compare the loss per word over consecutive windows of this many steps."""
    cap: int = 100
    """Most inner steps the stopping rule may take."""
    mi_check: Literal["epoch", "validation"] = "epoch"
    """When the switch-off rule compares MI: at the validations that end an epoch, as He et al.
    (§4.2; text.py checks once per pass over the training data), whatever `eval.every_steps`
    says; or at every validation."""

    def __post_init__(self):
        for key in ("window", "cap", "budget"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"methods.aggressive.{key}: must be at least 1, got {value}")


def inner_loop_done(steps: Sequence[tuple[float, int]], params: AggressiveParams) -> bool:
    """Whether the inner loop stops after `steps`, each (summed loss of its batch, predicted words).

    He et al. §6.5 stop "when the ELBO stays the same or decreases"; their code checks after
    every `window` steps whether the window's loss per word rose above the previous window's
    (the first window has none to compare with, so at least 2 windows run), capped at 100.
    """
    n = len(steps)
    if params.budget is not None:
        return n >= params.budget
    if n >= params.cap:
        return True
    w = params.window
    if n < 2 * w or n % w:
        return False
    return _per_word(steps[n - w:]) > _per_word(steps[n - 2 * w:n - w])


def _per_word(steps: Sequence[tuple[float, int]]) -> float:
    return sum(loss for loss, _ in steps) / sum(words for _, words in steps)


@register
class Aggressive(Method):
    name = "aggressive"
    Params = AggressiveParams

    # The inner loop draws its own minibatch order, distinct from the outer loop's.
    SEED_OFFSET = 7919

    def __init__(self, params: AggressiveParams):
        super().__init__(params)
        self.active = True
        # He et al. reference code starts from MI 0 (a freshly initialised model's MI).
        self.prev_mi = 0.0
        # The inner loop's pass over the training split: the generator state the pass
        # started from and how many batches it has used, so a resumed run redraws it exactly.
        self.pass_state: torch.Tensor | None = None
        self.consumed = 0
        self._batches = None
        self._generator: torch.Generator | None = None
        self.inner_steps = 0
        self.outer_steps = 0
        self.off_at: int | None = None  # the epoch whose end switched aggressive mode off

    def on_epoch_start(self, loop) -> None:
        if self.active and not loop.cfg.eval.val_mi:
            raise ConfigError("methods.aggressive: needs eval.val_mi: true (the switch-off rule "
                              "reads the validation mutual information)")

    def _fresh_batch(self, loop):
        """The next minibatch of the inner loop's own endless shuffled passes over the training split."""
        import torch
        if self._batches is None:
            if self.pass_state is None:
                self.pass_state = torch.Generator().manual_seed(loop.cfg.seed + self.SEED_OFFSET).get_state()
            self._generator = torch.Generator()
            self._generator.set_state(self.pass_state)
            batches = loop.corpus.train.batches(loop.cfg.data.batch_size, shuffle=True, generator=self._generator,
                                                regroup=loop.cfg.data.batch_order == "regroup")
            self._batches = itertools.islice(batches, self.consumed, None)
        batch = next(self._batches, None)
        if batch is None:  # pass finished: the next one starts from the generator's current state
            self.pass_state, self.consumed, self._batches = self._generator.get_state(), 0, None
            return self._fresh_batch(loop)
        self.consumed += 1
        return batch.to(loop.device)

    def before_step(self, loop, batch) -> StepPlan | None:
        if not self.active:
            return None
        steps: list[tuple[float, int]] = []
        while not inner_loop_done(steps, self.params):
            inner = self._fresh_batch(loop) if steps else batch
            terms = loop.compute_loss(inner)
            loop.apply_update(terms["loss"], encoder=True, decoder=False)
            steps.append((terms["loss"].item() * inner.tokens.size(0), (inner.lengths - 1).sum().item()))
        self.inner_steps += len(steps)
        self.outer_steps += 1
        return StepPlan(update_encoder=False)  # Alg. 1 line 11: then update θ only

    def after_validation(self, loop, metrics: dict[str, float]) -> None:
        # Whether this interval trained aggressively, and its mean encoder updates per decoder update.
        metrics["train/aggressive"] = float(self.active)
        metrics["train/inner_steps"] = self.inner_steps / max(self.outer_steps, 1)
        self.inner_steps = self.outer_steps = 0
        at_epoch_end = loop.epoch_batches == 0  # interval_batches resets it as an epoch ends
        if self.active and (at_epoch_end or self.params.mi_check == "validation"):
            mi = metrics["val/mi"]
            if mi < self.prev_mi:  # §4.2: stop once I_q stops climbing (reference: a strict fall)
                self.active, self.off_at = False, loop.epoch
            self.prev_mi = mi

    def verdict(self, loop) -> str:
        if self.active:
            return f"aggressive: still on after {loop.epoch} epochs"
        return f"aggressive: switched off at the end of epoch {self.off_at}" if self.off_at else "aggressive: off"

    def state_dict(self) -> dict:
        return {"active": self.active, "prev_mi": self.prev_mi, "pass_state": self.pass_state,
                "consumed": self.consumed, "off_at": self.off_at}

    def load_state_dict(self, state: dict) -> None:
        self.active, self.prev_mi = state["active"], state["prev_mi"]
        self.pass_state, self.consumed = state["pass_state"], state["consumed"]
        self.off_at = state.get("off_at")  # checkpoints from before it was kept have none
        self._batches = None
