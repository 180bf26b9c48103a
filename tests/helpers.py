"""What several test modules share: tiny configurations and search spaces, the sweep's runs as
MLflow holds them, the CLI as a subprocess, and process look-ups."""
import os
import subprocess
import sys
from pathlib import Path

import yaml

from models.config import merge
from sweeps import tracking

REPO = Path(__file__).resolve().parents[1]
LR = {"train.lr": {"type": "float", "low": 0.05, "high": 1.0, "log": True}}
"""A search space's `params:` with one log-scaled learning rate."""


def tiny_config(cache_dir, **sections) -> dict:
    """A config that trains in about a second on a CPU: small corpus, tiny LSTMs."""
    base = {
        # One thread: on a shared 2-core machine tiny models run many times faster so.
        "threads": 1,
        "data": {"synthetic_sentences": 400, "batch_size": 32, "cache_dir": str(cache_dir)},
        "model": {"enc_emb_dim": 8, "enc_hidden": 8, "dec_emb_dim": 8, "dec_hidden": 8, "latent_dim": 2},
        "train": {"max_epochs": 2},
        "eval": {"iw_samples": 5, "iw_batch": 5}}
    return merge(base, sections)


def tiny_fixed(cache_dir) -> dict:
    """tiny_config as a search space's dotted `fixed:` values: the epochs are the space's (or
    --epochs), the threads the trial's CPUs."""
    return {k: v for k, v in tracking.flatten(tiny_config(cache_dir)).items() if k not in ("threads", "train.max_epochs")}


def write_space(path: Path, params: dict, **top) -> str:
    """A search space of tiny trials at PATH (its corpus cached beside it): PARAMS searched, TOP
    its other top-level keys, whose `fixed` goes over the tiny values."""
    fixed = {**tiny_fixed(path.parent / "cache"), **top.pop("fixed", {})}
    path.write_text(yaml.safe_dump({"method": "vae", "fixed": fixed, "params": params, **top}))
    return str(path)


def sweep_runs(client, name: str):
    """(parent run, child runs) of sweep NAME."""
    runs = tracking.load_runs(client.tracking_uri, name)
    parents = [r for r in runs if tracking.PARENT_TAG not in r.data.tags]
    assert len(parents) == 1
    return parents[0], [r for r in runs if tracking.PARENT_TAG in r.data.tags]


def epochs_logged(client, run) -> list[int]:
    """The epochs of RUN's validation loss, in order."""
    return [m.step for m in sorted(client.get_metric_history(run.info.run_id, "val/neg_elbo"), key=lambda m: m.step)]


def artifacts(client, run, path=None) -> set[str]:
    return {a.path for a in client.list_artifacts(run.info.run_id, path)}


def sweeps_cli(*args: str, cwd=REPO, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m sweeps ARGS` in a fresh interpreter that imports this checkout; ENV, if given,
    is its whole environment."""
    return subprocess.run([sys.executable, "-m", "sweeps", *args], cwd=cwd, capture_output=True, text=True,
                          env=env or {**os.environ, "PYTHONPATH": str(REPO)}, timeout=timeout)


def session_pids(session: int) -> list[int]:
    """The live processes of a session (its leader's pid): what a test kills of what it started."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids
