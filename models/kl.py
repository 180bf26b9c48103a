"""Loss-only methods: KL weight schedules (β, linear warm-up, cyclical) and free bits, with what
free bits' hinge holds (`free_bits_diagnostics`)."""
from __future__ import annotations

import torch

from models.config import KLConfig


def kl_weight(cfg: KLConfig, step: int, steps_per_epoch: int, total_steps: int) -> float:
    """KL weight at iteration `step` (0-based).

    constant: β. linear: from `start` up to β, increasing per iteration over
    `steps` or `epochs` × iterations per epoch (He et al. App. B). cyclical: `cycles`
    cycles over the whole run, each rising linearly from 0 to β during its first
    `rise` fraction and then held (Fu et al. 2019, as used by Song et al.).
    """
    if cfg.anneal == "constant":
        return cfg.weight
    if cfg.anneal == "linear":
        length = cfg.steps if cfg.steps is not None else cfg.epochs * steps_per_epoch
        if length <= 0:
            return cfg.weight
        return min(cfg.weight, cfg.start + (cfg.weight - cfg.start) * step / length)
    period = max(total_steps / cfg.cycles, 1.0)
    phase = (step % period) / period
    return cfg.weight * min(1.0, phase / cfg.rise) if cfg.rise > 0 else cfg.weight


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) per example and dimension: (B, D)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1)


def kl_term(cfg: KLConfig, kl_dims: torch.Tensor) -> torch.Tensor:
    """The KL part of the loss per example, before the weight: (B, D) → (B,).

    FB is the hinge of Li et al. Eq. 1 per example and dimension, Σ_i max(λ/D, KL_i).
    The reference code instead masks out dimensions under the threshold (value 0);
    the two differ by a constant and give the same gradient: none for a dimension
    under its threshold. FBP (Pelsmaeker & Aziz) is the hinge on the total KL.
    """
    kind, lam = cfg.free_bits.kind, cfg.free_bits.lam
    if kind == "fb":
        return kl_dims.clamp(min=lam / kl_dims.size(-1)).sum(-1)
    total = kl_dims.sum(-1)
    if kind == "fbp":
        return total.clamp(min=lam)
    return total


def free_bits_diagnostics(cfg: KLConfig, mu: torch.Tensor, logvar: torch.Tensor) -> dict[str, float]:
    """For free bits, over a split's posteriors μ, log σ² (N, D): the mean σ and the share of the
    hinge's terms held at it (FB: KL_i below λ/D, per sentence and dimension; FBP: the total KL
    below λ, per sentence), which take no gradient toward the prior (Li et al. Eq. 1)."""
    kind, lam = cfg.free_bits.kind, cfg.free_bits.lam
    if kind == "none":
        return {}
    kl_dims = kl_per_dim(mu, logvar)
    held = kl_dims < lam / kl_dims.size(-1) if kind == "fb" else kl_dims.sum(-1) < lam
    return {"diag/fb_sigma": (0.5 * logvar).exp().mean().item(), "diag/fb_at_hinge": held.float().mean().item()}


def free_bits_note(cfg: KLConfig, metrics: dict[str, float]) -> str | None:
    """The verdict's note on free bits, from a validation's `free_bits_diagnostics`."""
    if cfg.free_bits.kind == "none" or "diag/fb_at_hinge" not in metrics:
        return None
    return (f"{cfg.free_bits.kind}: {metrics['diag/fb_at_hinge']:.0%} of the hinge's terms held at it "
            f"(λ = {cfg.free_bits.lam:g}), mean σ {metrics['diag/fb_sigma']:.2f}")
