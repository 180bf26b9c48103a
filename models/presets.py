"""Named method presets: partial configs with each paper's defaults.

`train --method NAME` and a search space's `method:` start from one of these;
`--set` and a space's fixed/searched values override them.
"""
from __future__ import annotations

import copy

from models.config import ConfigError

# He et al. App. B: KL weight warmed up linearly from 0.1 to 1 over 10 epochs.
_LINEAR_ANNEAL = {"anneal": "linear", "start": 0.1, "epochs": 10.0}

PRESETS: dict[str, dict] = {
    "vae": {},
    "lm": {"model": {"kind": "lm"}},
    "anneal": {"kl": dict(_LINEAR_ANNEAL)},
    # He et al. Table 2 β-VAE baseline, β = 0.2.
    "beta": {"kl": {"weight": 0.2}},
    # Fu et al. (2019), used as a baseline by Song et al.: 4 cycles, half of each rising.
    "cyclic": {"kl": {"anneal": "cyclical", "cycles": 4, "rise": 0.5}},
    # Li et al. Eq. 1 and Table 1: FB per dimension / FBP on the total KL, target rate λ in nats.
    "fb": {"kl": {"free_bits": {"kind": "fb", "lam": 4.0}}},
    "fbp": {"kl": {"free_bits": {"kind": "fbp", "lam": 4.0}}},
    # He et al. Alg. 1: inner loop stopped by the loss rule (window 15, cap 100), no annealing.
    "aggressive": {"methods": {"aggressive": {}}},
    # Long et al. §3.2: pooled encoder features; §5: every model trained with linear KL annealing.
    "pool-max": {"model": {"pooling": "max"}, "kl": dict(_LINEAR_ANNEAL)},
    "pool-avg": {"model": {"pooling": "mean"}, "kl": dict(_LINEAR_ANNEAL)},
    "pool-abs": {"model": {"pooling": "absmax"}, "kl": dict(_LINEAR_ANNEAL)},
    # Song et al. §4.3: des_std 0.7, f_epo 1 (their Yahoo setting), KL weight 0 → 1 over 10 epochs.
    "scale": {"kl": {"anneal": "linear", "start": 0.0, "epochs": 10.0},
              "methods": {"scale": {"des_std": 0.7, "f_epo": 1}}},
    # Li et al. §2.4: pretrained encoder, then FB with the hinge term annealed 0 → 1 over 10 epochs.
    "pretrain-fb": {"kl": {"anneal": "linear", "start": 0.0, "epochs": 10.0,
                           "free_bits": {"kind": "fb", "lam": 4.0}},
                    "methods": {"pretrain": {}}},
    # Zhu et al. BN-VAE (Song et al. Eq. 14), fixed scale γ = 0.6 (Song et al. Table 1).
    "bn": {"methods": {"bn": {"gamma": 0.6}}},
    # Ours, not a paper's: BN-VAE with BatchNorm's ε at 1e-12 instead of 1e-5. The KL term pulls
    # μ's spread before the normalisation down at a rate ∝ ε, and on PTB the published ε let it
    # fall below √ε by the second epoch, switching the floor off (docs/results/bn_epsilon.md).
    "bn-small-eps": {"methods": {"bn": {"gamma": 0.6, "eps": 1e-12}}},
}


def preset_config(name: str) -> dict:
    """A fresh copy of preset `name`'s partial config."""
    if name not in PRESETS:
        raise ConfigError(f"unknown method {name!r}; known: {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[name])
