"""`train(config)`: the entry point every trial and the `train` command call."""
from __future__ import annotations

import json
import os
from typing import Callable

from models import metrics, plots
from models.config import Config, parse_config, to_dict
from models.loop import EpochReport, Loop

PLOT_SENTENCES = 200
"""Test sentences in the posterior-mean-space plot (He et al. plot 500; each costs 4001 decodes)."""


def train(config: dict | Config | None = None,
          on_epoch: Callable[[EpochReport], bool | None] | None = None,
          out_dir: str | None = None, resume_from: str | None = None) -> dict:
    """Train one configuration and return its test metrics and history.

    `on_epoch(report)` sees each epoch's metrics and may stop training by
    returning True; `resume_from` continues from a checkpoint written by
    `report.save_checkpoint` or by a previous `out_dir` run.
    """
    cfg = parse_config(to_dict(config) if isinstance(config, Config) else config)
    loop = Loop(cfg)
    if resume_from is not None:
        loop.load(resume_from)
    stopped = loop.run(on_epoch)
    result = {
        "test": loop.test(),
        "history": loop.history,
        "epochs": loop.epoch,
        "wall_time": loop.elapsed,
        "best_val": loop.best_val,
        "stopped_early": stopped,
        "config": to_dict(cfg),
    }
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
        loop.save(os.path.join(out_dir, "checkpoint.pt"))
        if loop.is_vae and cfg.model.latent_dim == 1:
            _plot_posterior_mean_space(loop, os.path.join(out_dir, "posterior_mean_space.png"))
        with open(os.path.join(out_dir, "metrics.json"), "w") as fh:
            json.dump(result, fh, indent=2, default=float)
    return result


def _plot_posterior_mean_space(loop: Loop, path: str) -> None:
    """μ_θ(x) against μ_φ(x) for a scalar latent (He et al. App. A, Fig. 2)."""
    mu_theta, mu_phi = metrics.posterior_mean_space(loop.model, loop.corpus.test.head(PLOT_SENTENCES),
                                                    batch_size=loop.cfg.data.batch_size, device=loop.device)
    plots.plot_posterior_mean_space(mu_theta, mu_phi, path, title=f"after {loop.epoch} epochs")
