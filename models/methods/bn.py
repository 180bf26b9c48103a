"""BN-VAE (Zhu et al. 2020, as described in Song et al. 2024 Eq. 14).

The posterior mean is batch-normalised per dimension with a fixed scale γ and a
learnable shift β: μ̂_d = γ (μ_d − μ_B,d) / σ_B,d + β_d, which keeps the expected
KL at least n (γ² + β²) / 2 and so away from zero.

The encoder keeps PyTorch's default initialisation, as in the BN-VAE authors' code: under He et
al.'s U(−0.01, 0.01) the raw variance of μ (≈ 1e−10) is swamped by BatchNorm's ε, and the γ
floor then takes hold only once that variance has grown, depending on the seed.

BatchNorm's ε is the published 1e-5 by default; the preset `bn-small-eps` sets 1e-12, which
kept the floor on PTB where 1e-5 lost it (docs/results/bn_epsilon.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from models.config import ConfigError
from models.methods import register
from models.methods.base import Method


@dataclass
class BNParams:
    gamma: float = 0.6
    """Fixed scale γ of the normalised means (Song et al. Table 1: γ = 0.6 on Yahoo and Yelp)."""
    eps: float = 1e-5
    """BatchNorm's ε, PyTorch's and the BN-VAE authors' (nn.BatchNorm1d). The guarantee holds
    while the batches' variance of μ is well above it; the KL term pulls that variance down at a
    rate proportional to ε (docs/results/bn_epsilon.md), so a smaller ε keeps it longer."""

    encoder_init: Literal["pytorch", "uniform"] = "pytorch"
    """The encoder's initialisation: PyTorch's default, as the BN-VAE authors' code; or He et
    al.'s U(−0.01, 0.01) of every other method, under which μ's spread starts below √ε."""

    def __post_init__(self):
        if self.gamma < 0:
            raise ConfigError(f"methods.bn.gamma: must be non-negative, got {self.gamma}")
        if self.eps <= 0:
            raise ConfigError(f"methods.bn.eps: must be positive, got {self.eps}")


@register
class BatchNormVAE(Method):
    name = "bn"
    Params = BNParams

    def on_build(self, model) -> None:
        from models.nets import FixedScaleBatchNorm
        for module in model.encoder.modules():
            if self.params.encoder_init == "pytorch" and hasattr(module, "reset_parameters"):
                module.reset_parameters()  # PyTorch's default initialisation
        model.encoder.mu_transform = FixedScaleBatchNorm(model.latent_dim, self.params.gamma, eps=self.params.eps)

    def diagnose(self, loop, mu, logvar) -> dict[str, float]:
        # Song et al.'s floor (E[μ̂²] = γ² + β²) holds while the batches' variance of μ is well above
        # BatchNorm's ε; below it the layer divides a spread by √ε and outputs ≈ β.
        layer = loop.model.encoder.mu_transform
        spread = layer.running_var.sqrt()
        return {"diag/bn_spread_min": spread.min().item(), "diag/bn_spread_median": spread.median().item(),
                "diag/bn_defeated": (layer.running_var < layer.eps).float().mean().item()}

    def verdict(self, loop) -> str:
        layer = loop.model.encoder.mu_transform
        defeated, dims = int((layer.running_var < layer.eps).sum()), layer.running_var.numel()
        if defeated:
            return f"bn: normalisation defeated (spread < √ε in {defeated}/{dims} dims)"
        return f"bn: normalisation holds (smallest spread {layer.running_var.min().sqrt().item():.3g}, √ε " \
               f"{layer.eps ** 0.5:.3g})"
