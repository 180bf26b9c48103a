"""A sweep on disk, and running it: shared by `run`, `resume`, `confirm` and `submit`.

Tune's experiment lives in ./sweep_results/NAME (or $SWEEPS_STORAGE/NAME), beside
`sweep.json` (the record: everything `resume` needs), a copy of the space file and
`optuna.db` (the Optuna study, for Optuna's tools). `execute` runs or resumes the sweep a
record describes: the MLflow server (unless the record names one), the sweep's parent run,
Ray, the Tune experiment, the summary and plots.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

from sweeps import tracking
from sweeps.analysis import overview
from sweeps.errors import UserError
from sweeps.names import FAILED, PENDING, RUNNING
from sweeps.space import SearchSpace, SpaceError, load_space

RESULTS_DIR = "sweep_results"
STORAGE_ENV = "SWEEPS_STORAGE"
"""Overrides ./sweep_results: on a cluster, a directory every node shares (docs/cluster.md)."""
RECORD_FILE = "sweep.json"
SPACE_COPY = "space.yaml"
LOCK_FILE = "driver.lock"


def load(path: str) -> SearchSpace:
    try:
        return load_space(path)
    except SpaceError as err:
        raise UserError(str(err)) from err


def sweep_name(space_file: str, name: str | None) -> str:
    """The sweep's name: --name, else the space file's name and the time."""
    name = name or f"{Path(space_file).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise UserError(f"--name {name!r}: use letters, digits, '.', '_' and '-'")
    return name


def results_dir(name: str) -> Path:
    return Path(os.environ.get(STORAGE_ENV) or RESULTS_DIR, name).resolve()


@contextlib.contextmanager
def claim(name: str) -> Iterator[Path]:
    """Sweep NAME's folder, held by this process alone while it drives the sweep; UserError
    if another holds it. Two drivers of one sweep would start two MLflow servers over one
    ./mlflow.db and two Tune drivers over one experiment folder.

    A POSIX lock (lockf) on a file in the folder, taken before any MLflow call: NFS honours it
    across hosts (v4, or v3 with its lock manager), and it ends with the process, even one
    killed by SIGKILL, so a stale lock never blocks `resume`. Never claim twice in one process:
    closing the second handle would drop the lock."""
    results = results_dir(name)
    results.mkdir(parents=True, exist_ok=True)
    with open(results / LOCK_FILE, "a+") as lock:
        try:
            fcntl.lockf(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.seek(0)
            raise UserError(f"sweep {name!r} is already running ({lock.read().strip() or 'another process'}): "
                            "one driver per sweep") from None
        lock.truncate(0)
        lock.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        lock.flush()
        yield results


def refuse_existing(name: str) -> None:
    """UserError if sweep NAME was started before: `run` never starts it again."""
    results = results_dir(name)
    if (results / RECORD_FILE).exists():
        raise UserError(f"sweep {name!r} already exists in {results}; continue it with "
                        f"`python -m sweeps resume {name}` or choose another --name")


def execute(record: dict, space: SearchSpace, restore: bool) -> int:
    """Run or resume the sweep `record` describes; print and record its summary."""
    try:
        # A given server is checked before Ray starts: a wrong URI or wrong credentials is one
        # line now, not every trial's error.
        with tracking.command_server(record["tracking_uri"], record["mlflow_root"]) as server:
            from sweeps import engine  # imports Ray while the server starts
            with engine.local_ray():
                return _execute(record, space, restore, server.ready())
    except tracking.TrackingError as err:
        raise UserError(str(err)) from err


def _execute(record: dict, space: SearchSpace, restore: bool, uri: str) -> int:
    from sweeps import engine
    results = Path(record["results"])
    if restore:
        tracking.reopen_run(uri, record["parent_run_id"])
    else:
        record["experiment_id"], record["parent_run_id"] = tracking.start_sweep_run(
            uri, record["name"], _space_params(space, record), _tags(record), record["space_file"])
        if record.get("replaces_run_id"):  # the parent run of a start that saved no trial
            tracking.supersede_sweep_run(uri, record["experiment_id"], record.pop("replaces_run_id"),
                                         record["parent_run_id"])
        shutil.copyfile(record["space_file"], results / SPACE_COPY)  # resume must not depend on later edits
        (results / RECORD_FILE).write_text(json.dumps(record, indent=2))
    ctx = engine.TrialContext(space, record["overrides"], uri, record["experiment_id"],
                                    record["parent_run_id"])
    fit = engine.SweepFit(ctx, record["name"], str(results.parent), trials=record["trials"],
                          max_concurrent=record["max_concurrent"], cpus=record["cpus"], gpus=record["gpus"],
                          epochs=record["epochs"], seed=record["seed"])
    status, plots = "FAILED", []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            rows = fit.run(restore)
            lost = tracking.delete_lost_runs(uri, record["experiment_id"], record["parent_run_id"],
                                             {r.trial_id for r in rows})
            if lost:
                print(f"deleted {lost} MLflow run(s) of trials lost with the interrupted driver")
            unfinished = len(rows) < record["trials"] or any(r.outcome in (RUNNING, PENDING) for r in rows)
            # A sweep whose every trial failed found nothing: a script running it must notice.
            status = ("KILLED" if unfinished else "FAILED" if all(r.outcome == FAILED for r in rows)
                      else "FINISHED")
            # The sweep's own plots go on its parent run, where the MLflow UI shows them.
            plots = overview.sweep_plots(tracking.Store(uri), record["name"], space, tmp)
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            rows = fit.rows  # as last seen, if an exception interrupted the fit
            report = engine.summary(rows, space.objectives, record["name"], _where(record, uri, status))
            # Stopped before Tune showed a trial: the summary of an earlier attempt stays.
            files = {"summary.txt": report, "trials.csv": engine.trials_csv(rows, space.objectives)} if rows else {}
            print(report)
            try:
                tracking.finish_sweep_run(uri, record["parent_run_id"], status, files, tuple(plots))
            except tracking.TrackingError as err:  # an error on the way here, if any, is the one to see
                print(f"warning: the parent run was not ended as {status} ({err}); "
                      f"`python -m sweeps resume {record['name']}` ends it", file=sys.stderr)
    return {"FINISHED": 0, "FAILED": 1}.get(status, 130)


def _where(record: dict, uri: str, status: str) -> dict[str, str]:
    from sweeps import engine
    local = not record["tracking_uri"]
    where = {"Tune results": record["results"],
             "MLflow": f"experiment {record['name']}, parent run {record['parent_run_id']}"
                       + (f" in {os.path.join(record['mlflow_root'], tracking.DB_FILE)}" if local else f" at {uri}"),
             "Browse": ("python -m sweeps ui  (then open the sweep's link it prints)" if local
                        else tracking.ui_link(uri, record["experiment_id"])),
             "Optuna study": f"optuna-dashboard {engine.storage_url(record['results'])}"}
    if status == "KILLED":  # failed trials stay failed: resuming reruns nothing
        where["Resume"] = f"python -m sweeps resume {record['name']}"
    return where


def _tags(record: dict) -> dict[str, str]:
    tags = {"sweep.command": record["command"], "sweep.results": record["results"],
            "mlflow.source.name": "python -m sweeps run", "mlflow.note.content": record["command"]}
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                            capture_output=True, text=True)
    if commit.returncode == 0:
        tags["mlflow.source.git.commit"] = commit.stdout.strip()
    return tags


def _describe(param) -> str:
    text = (f"choice{list(param.choices)}" if param.type == "categorical"
            else f"{param.type}[{param.low}, {param.high}]" + (" log" if param.log else "")
            + (f" step {param.step}" if param.step else ""))
    return text + "".join(f" when {k} in {list(v)}" for k, v in param.when)


def _space_params(space: SearchSpace, record: dict) -> dict:
    """The search space as parent-run params (the file itself is an artifact too)."""
    params = {"space.file": record["space_file"], "space.method": space.method or "joint",
              "objectives": ", ".join(f"{o.metric} {o.mode}" for o in space.objectives),
              **{f"sweep.{k}": record[k] for k in ("trials", "epochs", "max_concurrent", "cpus", "gpus", "seed")}}
    params.update({f"fixed.{k}": v for k, v in space.fixed.items()})
    params.update({f"search.{p.key}": _describe(p) for p in space.params})
    for label, branch in space.methods.items():
        params[f"methods.{label}"] = branch.preset
        params.update({f"methods.{label}.fixed.{k}": v for k, v in branch.fixed.items()})
        params.update({f"methods.{label}.search.{p.key}": _describe(p) for p in branch.params})
    params.update({f"set.{k}": v for k, v in record["overrides"].items()})
    return params
