"""A sweep's folder and its record: what `run` writes and `resume` reads back.

./sweep_results/NAME (or $SWEEPS_STORAGE/NAME) holds Tune's experiment, `sweep.json` (the
record: everything `resume` needs), a copy of the space file, the Optuna storage and the lock
of its one driver (engine.driver). Imports no Ray, so the CLI checks names and folders
before it imports the engine.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

from sweeps.errors import UserError

RESULTS_DIR = "sweep_results"
STORAGE_ENV = "SWEEPS_STORAGE"
"""Overrides ./sweep_results: on a cluster, a directory every node shares (docs/cluster.md)."""
RECORD_FILE = "sweep.json"
SPACE_COPY = "space.yaml"
LOCK_FILE = "driver.lock"


def results_dir(name: str) -> Path:
    return Path(os.environ.get(STORAGE_ENV) or RESULTS_DIR, name).resolve()


def exists(name: str) -> bool:
    """Whether sweep NAME was started: its parent run exists and its record was written."""
    return (results_dir(name) / RECORD_FILE).exists()


def refuse_existing(name: str) -> None:
    """UserError if sweep NAME was started before: `run` never starts it again."""
    if exists(name):
        raise UserError(f"sweep {name!r} already exists in {results_dir(name)}; continue it with "
                        f"`python -m sweeps resume {name}` or choose another --name")


@dataclass(frozen=True)
class SweepRecord:
    """What `run` decided for a sweep, as `resume` needs it; `sweep.json` holds its fields."""
    name: str
    space_file: str
    """The space file as given, absolute; its copy in the folder is what `resume` reads."""
    overrides: dict
    """Dotted config keys fixed by --set and the shared options."""
    trials: int
    max_concurrent: int
    cpus: float
    gpus: float
    """Per trial."""
    epochs: int
    """As trials resolve it: --epochs, the space's, else the corpus profile's default."""
    seed: int
    tracking_uri: str | None
    """The tracking server given (--tracking-uri, $MLFLOW_TRACKING_URI); None: a local one."""
    mlflow_root: str
    """Where a local server keeps mlflow.db: the directory the sweep was run from."""
    results: str
    """The sweep's folder, absolute."""
    command: str
    """The command line, credentials redacted."""
    experiment_id: str | None = None
    parent_run_id: str | None = None
    """Set once the sweep's parent run exists, before the record is written."""

    def save(self) -> None:
        Path(self.results, RECORD_FILE).write_text(json.dumps(dataclasses.asdict(self), indent=2))

    @classmethod
    def load(cls, name: str) -> SweepRecord:
        """Sweep NAME's record; UserError if the file is not one."""
        path = results_dir(name) / RECORD_FILE
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except (json.JSONDecodeError, TypeError) as err:
            raise UserError(f"{path}: not a sweep record ({err})") from err
