"""Scale-VAE (Song et al. 2024, §3.1, Alg. 1, Eq. 2–7).

The decoder samples z from N(f·μ, σ²) with a per-dimension factor
f_d = des_std / Std[μ_d]; the KL term keeps the original posterior (the loop
computes it from μ). During the first `f_epo` epochs each minibatch uses its own
factor; afterwards an epoch uses the average factor of the previous epoch.
`model.latent_scale` holds the factor the decoder trains with (within f_epo, the epoch's average
of the batch factors so far), which evaluation (models/nets.py: TextVAE says which generative
model the metrics describe) and generation (z ~ N(0, I) multiplied by f) read.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from models.config import ConfigError
from models.methods import register
from models.methods.base import Method

if TYPE_CHECKING:
    import torch

STD_FLOOR = 1e-6
"""Smallest Std[μ_d] divided by: a dimension whose means are all equal would give f = ∞."""
RUNAWAY_FACTOR = 100.0
"""A median f̄ at which the verdict says the factor ran away: Std[μ] fell to 1/100 of des_std
or less (f̄ is 4–5 on the synthetic corpus while μ keeps its spread)."""


@dataclass
class ScaleParams:
    des_std: float = 0.7
    """Target standard deviation of the scaled means over a minibatch (Song et al. Eq. 3; Yahoo 0.7)."""
    f_epo: int = 1
    """Epochs in which each minibatch uses its own factor (Song et al. §3.1; Yahoo 1, Yelp 7)."""

    def __post_init__(self):
        if self.des_std <= 0:
            raise ConfigError(f"methods.scale.des_std: must be positive, got {self.des_std}")
        if self.f_epo < 1:
            # Before any epoch there is no previous average to use.
            raise ConfigError(f"methods.scale.f_epo: must be at least 1, got {self.f_epo}")


def batch_factor(mu: torch.Tensor, des_std: float) -> torch.Tensor:
    """f = des_std / Std[μ] per dimension over the minibatch: mu (B, D) → (D,), B ≥ 2.

    Alg. 1 line 6 computes f from the minibatch's μ inside the step, so gradients flow through
    Std[μ] too: within f_epo the decoder's input f·μ does not change with the spread of μ. With
    f held constant in a step instead, the decoder's early preference for a quieter z shrinks μ
    step after step while f grows to match (measured on the synthetic corpus: f ≈ 10⁴ after 3
    epochs, against O(1) here). Neither holds μ's scale up: the reconstruction is blind to it
    and the KL term (on the raw posterior, Eq. 7) pulls it in, so Std[μ] falls and f rises
    over training (docs/results/collapse_table.md). After f_epo the factor is the previous
    epoch's average, a constant.
    """
    return des_std / mu.std(0, correction=0).clamp(min=STD_FLOOR)


@register
class Scale(Method):
    name = "scale"
    Params = ScaleParams

    def __init__(self, params: ScaleParams):
        super().__init__(params)
        self.factor_sum: torch.Tensor | None = None  # (D,) sum of this epoch's minibatch factors
        self.count = 0
        self.previous: torch.Tensor | None = None  # (D,) f̄ of the previous epoch

    def on_epoch_start(self, loop) -> None:
        # Alg. 1 line 17: the finished epoch's average factor, which the epochs after f_epo use.
        if self.count:
            self.previous = self.factor_sum / self.count
        elif self.previous is None:
            self.previous = loop.model.latent_scale.clone()
        self.factor_sum, self.count = None, 0
        if loop.epoch > self.params.f_epo:
            # The factor this epoch's decoder trains with, which evaluation and generation use
            # (models/nets.py, TextVAE): not the next epoch's average in the making.
            loop.model.latent_scale.copy_(self.previous)

    def decoder_mean(self, loop, mu: torch.Tensor) -> torch.Tensor:
        """The scaled mean f·μ: mu (B, D) → (B, D)."""
        scale = loop.model.latent_scale
        factor = batch_factor(mu, self.params.des_std) if mu.size(0) > 1 else None
        if factor is not None:
            # Alg. 1 line 17 averages every minibatch's factor, in every epoch (as numbers).
            recorded = factor.detach()
            self.factor_sum = recorded if self.factor_sum is None else self.factor_sum + recorded
            self.count += 1
        if loop.epoch > self.params.f_epo:
            return mu * self.previous
        if factor is not None:
            # Within f_epo the decoder sees each batch's own factor: evaluation reads the average
            # of those it has seen this epoch.
            scale.copy_(self.factor_sum / self.count)
            return mu * factor
        return mu * scale.clone()  # a single sentence has no spread: the epoch's average so far

    def diagnose(self, loop, mu: torch.Tensor, logvar: torch.Tensor) -> dict[str, float]:
        # Medians over dimensions: f̄ is O(1) once Std[μ] has settled and grows without bound when
        # μ shrinks for free; the decoder's signal f·Std[μ] (des_std while f tracks μ) against its
        # noise σ says whether what it reads of x is more than noise.
        f = loop.model.latent_scale
        signal = f * mu.std(0, correction=0)
        return {"diag/scale_factor": f.median().item(), "diag/scale_mu_std": mu.std(0, correction=0).median().item(),
                "diag/scale_signal_to_noise": (signal / (0.5 * logvar).exp().mean(0)).median().item()}

    def verdict(self, loop) -> str:
        tested = loop.tested_validation()
        factor = tested.get("diag/scale_factor", float("nan"))
        # f̄ = des_std / Std[μ]: a runaway f̄ means the KL term shrank μ and the factor followed it.
        ran_away = "factor ran away, " if factor >= RUNAWAY_FACTOR else ""
        return (f"scale: {ran_away}median f̄ {factor:.3g}, Std[μ] "
                f"{tested.get('diag/scale_mu_std', float('nan')):.3g}, the decoder's signal/noise "
                f"{tested.get('diag/scale_signal_to_noise', float('nan')):.2g}")

    # A run can be checkpointed mid-epoch (eval.every_steps): the epoch's sums go with it.
    def state_dict(self) -> dict:
        return {"factor_sum": self.factor_sum, "count": self.count, "previous": self.previous}

    def load_state_dict(self, state: dict) -> None:
        self.factor_sum, self.count, self.previous = state["factor_sum"], state["count"], state["previous"]
