"""`train(config)`: the entry point every trial and the `train` command call."""
from __future__ import annotations

import json
import os
import time
import warnings
from typing import Callable

from models import generate, metrics, plots, saved
from models.config import Config, to_dict
from models.resolve import parse_config
from models.files import MODEL_FILE, RECONSTRUCTIONS_FILE, SAMPLES_FILE
from models.diagnostics import verdict
from models.kernels import choice
from models.loop import EpochReport, EvaluationProgress, Loop, resolve_device

PLOT_SENTENCES = 200
"""Test sentences in the posterior-mean-space plot (He et al. plot 500; each costs 4001 decodes)."""


def train(config: dict | Config | None = None,
          on_epoch: Callable[[EpochReport], bool | None] | None = None,
          out_dir: str | None = None, resume_from: str | None = None, init_from: str | None = None,
          on_test: Callable[[EvaluationProgress], None] | None = None) -> dict:
    """Train one configuration and return its test metrics, history and verdict (one line on
    whether the latent is active and why: models/diagnostics.py).

    `on_epoch(report)` sees each epoch's metrics and may stop training by
    returning True; `on_test(progress)` sees the test evaluation's progress, which after a short
    training can take longer than it (`Loop.test`); `resume_from` continues from a checkpoint written by
    `report.save_checkpoint` or by a previous `out_dir` run; `init_from` starts a fresh
    run from a model file's weights (models/saved.py). `out_dir` receives the checkpoint,
    metrics.json, the model file and the text files of models/generate.py.
    """
    cfg = parse_config(to_dict(config) if isinstance(config, Config) else config)
    loop = Loop(cfg)
    if resume_from is not None:
        loop.load(resume_from)
    elif init_from is not None:
        saved.init_weights(loop, init_from)
    stopped = loop.run(on_epoch)
    start = time.perf_counter()
    test = loop.test(on_test)
    result = {
        "test": test,
        "history": loop.history,
        "epochs": loop.epoch,
        "wall_time": loop.elapsed,
        "test_time": time.perf_counter() - start,
        "best_val": loop.best_val,
        "stopped_early": stopped,
        "verdict": verdict(loop, test),
        "config": to_dict(cfg),
        "init_from": init_from,
    }
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
        loop.save(os.path.join(out_dir, "checkpoint.pt"))
        _write_model_and_text(loop, out_dir)
        if loop.is_vae and cfg.model.latent_dim == 1:
            _plot_posterior_mean_space(loop, os.path.join(out_dir, "posterior_mean_space.png"))
        with open(os.path.join(out_dir, "metrics.json"), "w") as fh:
            json.dump(result, fh, indent=2, default=float)
    return result


def arithmetic(config: dict | Config | None = None) -> str:
    """Which arithmetic `train(config)` uses on this machine, in one line (models/kernels/): what
    tells apart two runs whose numbers differ only by it. Builds the kernels if they are not yet."""
    cfg = parse_config(to_dict(config) if isinstance(config, Config) else config)
    return choice.arithmetic(choice.resolve(cfg.model.kernels), resolve_device(cfg.device))


def _write_model_and_text(loop: Loop, out_dir: str) -> None:
    """The best model (test() loaded it) as a model file, and the text a person reads."""
    try:
        saved.save_model(loop, os.path.join(out_dir, MODEL_FILE))
    except saved.ModelFileError as err:  # too large to share: the run itself is fine
        warnings.warn(f"{err}; no model file written", stacklevel=3)
    texts = {SAMPLES_FILE: generate.samples_text(loop.model, loop.corpus.vocab, seed=loop.cfg.seed)}
    if loop.is_vae:
        texts[RECONSTRUCTIONS_FILE] = generate.reconstructions_text(loop.model, loop.corpus.valid, loop.corpus.vocab)
    for name, text in texts.items():
        with open(os.path.join(out_dir, name), "w") as fh:
            fh.write(text)


def _plot_posterior_mean_space(loop: Loop, path: str) -> None:
    """μ_θ(x) against μ_φ(x) for a scalar latent (He et al. App. A, Fig. 2)."""
    mu_theta, mu_phi = metrics.posterior_mean_space(loop.model, loop.corpus.test.head(PLOT_SENTENCES),
                                                    batch_size=loop.cfg.data.batch_size, device=loop.device)
    plots.plot_posterior_mean_space(mu_theta, mu_phi, path, title=f"after {loop.epoch} epochs")
