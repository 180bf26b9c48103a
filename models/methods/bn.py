"""BN-VAE (Zhu et al. 2020, as described in Song et al. 2024 Eq. 14).

The posterior mean is batch-normalised per dimension with a fixed scale γ and a
learnable shift β: μ̂_d = γ (μ_d − μ_B,d) / σ_B,d + β_d, which keeps the expected
KL at least n (γ² + β²) / 2 and so away from zero.

The encoder keeps PyTorch's default initialisation, as in the BN-VAE authors' code: under He et
al.'s U(−0.01, 0.01) the raw variance of μ (≈ 1e−10) is swamped by BatchNorm's ε, and the γ
floor then takes hold only once that variance has grown, depending on the seed.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.config import ConfigError
from models.methods import register
from models.methods.base import Method


@dataclass
class BNParams:
    gamma: float = 0.6
    """Fixed scale γ of the normalised means (Song et al. Table 1: γ = 0.6 on Yahoo and Yelp)."""

    def __post_init__(self):
        if self.gamma < 0:
            raise ConfigError(f"methods.bn.gamma: must be non-negative, got {self.gamma}")


class FixedScaleBatchNorm(nn.Module):
    """Batch normalisation of μ (B, D) with a constant scale γ (a buffer) and a learnable shift β.

    Training uses the minibatch statistics and updates running ones, which evaluation
    uses (as nn.BatchNorm1d). A training batch of one sentence has no spread, so it is
    normalised with the running statistics instead of failing.
    """

    def __init__(self, dim: int, gamma: float, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.register_buffer("gamma", torch.full((dim,), float(gamma)))
        self.beta = nn.Parameter(torch.zeros(dim))
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))

    def forward(self, mu: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(mu, self.running_mean, self.running_var, weight=self.gamma, bias=self.beta,
                            training=self.training and mu.size(0) > 1, momentum=self.momentum, eps=self.eps)


@register
class BatchNormVAE(Method):
    name = "bn"
    Params = BNParams

    def on_build(self, model: torch.nn.Module) -> None:
        for module in model.encoder.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()  # PyTorch's default initialisation
        model.encoder.mu_transform = FixedScaleBatchNorm(model.latent_dim, self.params.gamma)
