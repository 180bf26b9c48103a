"""Figures of the evaluation metrics (matplotlib, file output only)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on workers and CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_posterior_mean_space(mu_theta: np.ndarray, mu_phi: np.ndarray, path: str,
                              title: str | None = None) -> None:
    """Scatter each sentence at (μ_θ(x), μ_φ(x)) with the diagonal μ_θ = μ_φ, as He et al.
    Fig. 1b/2: points at the origin are collapsed, points on the diagonal have an
    inference network that matches the model posterior's mean."""
    mu_theta, mu_phi = np.asarray(mu_theta), np.asarray(mu_phi)
    if mu_theta.shape != mu_phi.shape or mu_theta.ndim != 1:
        raise ValueError(f"mu_theta and mu_phi must be 1-D of equal length, got shapes "
                         f"{mu_theta.shape} and {mu_phi.shape}")
    reach = max(1.0, float(np.abs(np.concatenate([mu_theta, mu_phi])).max(initial=0.0))) * 1.1
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([-reach, reach], [-reach, reach], "k--", linewidth=0.8)
    ax.scatter(mu_theta, mu_phi, s=6, alpha=0.6)
    ax.set(xlim=(-reach, reach), ylim=(-reach, reach), aspect="equal",
           xlabel=r"$\mu_{x,\theta}$ (model posterior)", ylabel=r"$\mu_{x,\phi}$ (approximate posterior)")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
