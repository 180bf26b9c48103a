"""Confirming a config over seeds: its search space, and the mean (std) of its seeds.

How a best trial becomes a claim: the papers report mean (std) over 5 random restarts
(He et al. §6.1, Song et al. Table 1). `sweeps confirm` turns the config (e.g. from
export-best) into a search space whose only parameter is the seed, run with the grid
sampler (each seed exactly once, no early stopping), so the seeds are tracked in MLflow
as child runs of one parent like any sweep; `summary` reads them back.
"""
from __future__ import annotations

import numpy as np

from models.config import to_dict

from models.resolve import parse_config
from sweeps.analysis import trial_table
from sweeps.names import TEST_METRICS
from sweeps.tracking import Store, flatten

UNSWEPT = ("seed", "train.max_epochs")
"""Config keys the confirm space sets itself: the grid's parameter and the space's `epochs`."""


def confirm_space(config: dict, seeds: list[int], max_concurrent: int, cpus: float) -> dict:
    """A search space holding CONFIG fixed, searching only the seed over a grid."""
    cfg = parse_config(config)  # a bad file fails here, naming the key
    flat = flatten(to_dict(cfg))
    return {"fixed": {k: v for k, v in flat.items() if k not in UNSWEPT},
            "params": {"seed": {"type": "categorical", "choices": seeds}},
            "sampler": "grid", "trials": len(seeds), "epochs": cfg.train.max_epochs,
            "max_concurrent": max_concurrent, "resources": {"cpus": cpus}}


def summary(store: Store, name: str, seeds: list[int]) -> str:
    """Mean (std) over the completed seeds of every test metric, as the papers' tables."""
    done = trial_table.completed(trial_table.load(store, [name]), ["test/nll"])
    rows = sorted(done.to_pylist(), key=lambda r: r["config.seed"])
    missing = sorted(set(seeds) - {r["config.seed"] for r in rows})
    lines = [f"{name}: {len(rows)} of {len(seeds)} seeds completed"
             + (f" (missing: {', '.join(map(str, missing))})" if missing else ""),
             f"{'metric':<14} {'mean (std)':<18} " + " ".join(f"seed {r['config.seed']:<6}" for r in rows)]
    for metric in TEST_METRICS + ("wall_time", "test_time"):
        values = np.array([r[metric] for r in rows], float)
        std = values.std(ddof=1) if len(values) > 1 else 0.0
        lines.append(f"{metric:<14} {f'{values.mean():.2f} ({std:.2f})':<18} "
                     + " ".join(f"{v:<11.4g}" for v in values))
    return "\n".join(lines)
