"""The method interface: a few hooks with do-nothing defaults.

A method is a small unit that changes the training procedure or the
architecture (He et al.'s aggressive training, Scale-VAE, BN-VAE, encoder
pretraining). It is switched on by naming it under `methods:` in the config,
with its own parameters dataclass, and composes with the loss-only settings
(`kl:` annealing, free bits, β) and with other methods. A method's module imports torch only
inside the hooks that train: validating its parameters (models/resolve.py) stays light.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # annotations only: validating a config imports no torch
    import torch

    from models.loop import Loop


@dataclass
class NoParams:
    """A method without parameters."""


@dataclass
class StepPlan:
    """Which parameter groups the loop's joint step updates."""
    update_encoder: bool = True
    update_decoder: bool = True


class Method:
    name: ClassVar[str]
    Params: ClassVar[type] = NoParams

    def __init__(self, params: Any):
        self.params = params

    def on_build(self, model: torch.nn.Module) -> None:
        """Change the freshly built model (e.g. add a normalisation layer)."""

    def before_training(self, loop: "Loop") -> None:
        """Run once before the first epoch of a fresh (not resumed) run."""

    def on_epoch_start(self, loop: "Loop") -> None:
        """Called before each training epoch."""

    def before_step(self, loop: "Loop", batch) -> StepPlan | None:
        """Called before each joint step; may run extra updates and restrict the step."""
        return None

    def decoder_mean(self, loop: "Loop", mu: torch.Tensor) -> torch.Tensor | None:
        """Training only: the mean of the posterior the decoder samples from, or None to keep μ."""
        return None

    def after_validation(self, loop: "Loop", metrics: dict[str, float]) -> None:
        """Called after each validation (once per epoch, or every `eval.every_steps` updates) with
        the interval's train and the validation metrics; may add its own entries."""

    def diagnose(self, loop: "Loop", mu: "torch.Tensor", logvar: "torch.Tensor") -> dict[str, float]:
        """At each validation, given its posteriors μ, log σ² (N, D): the `diag/...` metrics of what
        this method's hold on the latent rests on (models/diagnostics.py)."""
        return {}

    def verdict(self, loop: "Loop") -> str | None:
        """At the end of training: a short note on whether this method held, for the run's verdict."""
        return None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` returned."""
