"""Driving a sweep: `run_sweep` starts one, `resume_sweep` continues one; for the commands run,
resume, confirm and submit.

The driver holds the sweep's folder against any other driver (`claim`), then runs or resumes
the sweep its record describes (record.SweepRecord): the MLflow server (unless the record
names one), the sweep's parent run, Ray, the Tune experiment (SweepFit), the summary and
plots.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from sweeps import tracking
from sweeps.analysis import overview
from sweeps.engine.progress import TrialRow, summary, trials_csv
from sweeps.engine.study import storage_url
from sweeps.engine.trainable import TrialContext
from sweeps.engine.tuner import SweepFit, can_resume, local_ray
from sweeps.errors import UserError
from sweeps.names import FAILED, PENDING, RUNNING
from sweeps.record import (LOCK_FILE, RECORD_FILE, SPACE_COPY, SweepRecord, exists, refuse_existing,
                           results_dir)
from sweeps.space import SearchSpace, load_space


def run_sweep(record: SweepRecord, space: SearchSpace, *, resume_if_exists: bool = False,
              tracking_uri: str | None = None) -> int:
    """Start the sweep RECORD describes; its exit status. With RESUME_IF_EXISTS a sweep of that
    name started before is resumed instead (on TRACKING_URI if given, as `resume`), or started
    again if Tune saved none of it."""
    with claim(record.name) as folder:
        replaces_run_id = None
        # Decided again here, now that no other driver can be starting it.
        if resume_if_exists and exists(record.name):
            if can_resume(str(folder)):
                print(f"sweep {record.name!r} exists in {folder}: resuming it with the settings it started with",
                      flush=True)
                return _resume(record.name, tracking_uri)
            # Stopped before Tune saved a trial (a job stopped as it started): there is nothing
            # to resume, and refusing would fail every later submit of this name.
            print(f"sweep {record.name!r} in {folder} was stopped before Tune saved a trial: starting it again",
                  flush=True)
            replaces_run_id = SweepRecord.load(record.name).parent_run_id
            (folder / RECORD_FILE).unlink()
        refuse_existing(record.name)
        return _execute(record, space, restore=False, replaces_run_id=replaces_run_id)


def resume_sweep(name: str, tracking_uri: str | None = None) -> int:
    """Continue sweep NAME from Tune's saved state, on TRACKING_URI if given (a checked URI,
    credentials applied) instead of the server it used; its exit status."""
    with claim(name):
        return _resume(name, tracking_uri)


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


def _resume(name: str, tracking_uri: str | None) -> int:
    """Resume sweep NAME, whose folder this process has claimed."""
    results = results_dir(name)
    record = SweepRecord.load(name)
    if not can_resume(str(results)):
        raise UserError(f"sweep {name!r} was interrupted before its first trial was saved; "
                        "run it again under a new --name")
    if tracking_uri:
        record = dataclasses.replace(record, tracking_uri=tracking_uri)
    return _execute(record, load_space(results / SPACE_COPY), restore=True)


def _execute(record: SweepRecord, space: SearchSpace, restore: bool, replaces_run_id: str | None = None) -> int:
    """Run or resume the sweep RECORD describes; print and record its summary."""
    try:
        # A given server is checked before Ray starts: a wrong URI or wrong credentials is one
        # line now, not every trial's error.
        with tracking.command_server(record.tracking_uri, record.mlflow_root) as server:
            with local_ray():
                return _drive(record, space, restore, server.ready(), replaces_run_id)
    except tracking.TrackingError as err:
        raise UserError(str(err)) from err


def _drive(record: SweepRecord, space: SearchSpace, restore: bool, uri: str, replaces_run_id: str | None) -> int:
    results = Path(record.results)
    if restore:
        tracking.reopen_run(uri, record.parent_run_id)
    else:
        experiment_id, parent_run_id = tracking.start_sweep_run(
            uri, record.name, _space_params(space, record), _tags(record), record.space_file)
        record = dataclasses.replace(record, experiment_id=experiment_id, parent_run_id=parent_run_id)
        if replaces_run_id:  # the parent run of a start that saved no trial
            tracking.supersede_sweep_run(uri, experiment_id, replaces_run_id, parent_run_id)
        shutil.copyfile(record.space_file, results / SPACE_COPY)  # resume must not depend on later edits
        record.save()
    fit = SweepFit(TrialContext(space, record.overrides, uri, record.experiment_id, record.parent_run_id),
                   record.name, str(results.parent), trials=record.trials, max_concurrent=record.max_concurrent,
                   cpus=record.cpus, gpus=record.gpus, epochs=record.epochs, seed=record.seed)
    status, plots = "FAILED", []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            rows = fit.run(restore)
            lost = tracking.delete_lost_runs(uri, record.experiment_id, record.parent_run_id,
                                             {r.trial_id for r in rows})
            if lost:
                print(f"deleted {lost} MLflow run(s) of trials lost with the interrupted driver")
            status = _status(rows, record.trials)
            # The sweep's own plots go on its parent run, where the MLflow UI shows them.
            plots = overview.sweep_plots(tracking.Store(uri), record.name, space, tmp)
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            rows = fit.rows  # as last seen, if an exception interrupted the fit
            report = summary(rows, space.objectives, record.name, _where(record, uri, status))
            # Stopped before Tune showed a trial: the summary of an earlier attempt stays.
            files = {"summary.txt": report, "trials.csv": trials_csv(rows, space.objectives)} if rows else {}
            print(report)
            try:
                tracking.finish_sweep_run(uri, record.parent_run_id, status, files, tuple(plots))
            except tracking.TrackingError as err:  # an error on the way here, if any, is the one to see
                print(f"warning: the parent run was not ended as {status} ({err}); "
                      f"`python -m sweeps resume {record.name}` ends it", file=sys.stderr)
    return {"FINISHED": 0, "FAILED": 1}.get(status, 130)


def _status(rows: list[TrialRow], trials: int) -> str:
    """The parent run's MLflow status once the fit returned."""
    if len(rows) < trials or any(r.outcome in (RUNNING, PENDING) for r in rows):
        return "KILLED"
    # A sweep whose every trial failed found nothing: a script running it must notice.
    return "FAILED" if all(r.outcome == FAILED for r in rows) else "FINISHED"


def _where(record: SweepRecord, uri: str, status: str) -> dict[str, str]:
    local = not record.tracking_uri
    where = {"Tune results": record.results,
             "MLflow": f"experiment {record.name}, parent run {record.parent_run_id}"
                       + (f" in {os.path.join(record.mlflow_root, tracking.DB_FILE)}" if local else f" at {uri}"),
             "Browse": ("python -m sweeps ui  (then open the sweep's link it prints)" if local
                        else tracking.ui_link(uri, record.experiment_id)),
             "Optuna study": f"optuna-dashboard {storage_url(record.results)}"}
    if status == "KILLED":  # failed trials stay failed: resuming reruns nothing
        where["Resume"] = f"python -m sweeps resume {record.name}"
    return where


def _tags(record: SweepRecord) -> dict[str, str]:
    tags = {"sweep.command": record.command, "sweep.results": record.results,
            "mlflow.source.name": "python -m sweeps run", "mlflow.note.content": record.command}
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


def _space_params(space: SearchSpace, record: SweepRecord) -> dict:
    """The search space as parent-run params (the file itself is an artifact too)."""
    params = {"space.file": record.space_file, "space.method": space.method or "joint",
              "objectives": ", ".join(f"{o.metric} {o.mode}" for o in space.objectives),
              **{f"sweep.{k}": getattr(record, k) for k in ("trials", "epochs", "max_concurrent", "cpus", "gpus",
                                                             "seed")}}
    params.update({f"fixed.{k}": v for k, v in space.fixed.items()})
    params.update({f"search.{p.key}": _describe(p) for p in space.params})
    for label, branch in space.methods.items():
        params[f"methods.{label}"] = branch.preset
        params.update({f"methods.{label}.fixed.{k}": v for k, v in branch.fixed.items()})
        params.update({f"methods.{label}.search.{p.key}": _describe(p) for p in branch.params})
    params.update({f"set.{k}": v for k, v in record.overrides.items()})
    return params
