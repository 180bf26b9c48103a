"""The Tuner: a local Ray (or the cluster's), the sweep's Tune experiment, the driver's callback.

`fit` runs or resumes a sweep and returns every trial's row; the callback keeps the live
table, ends the MLflow runs of trials stopped from outside their process and writes each
finished trial to the sweep's Optuna storage (study.py).
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import ray
import torch
from ray import tune

from sweeps import tracking
from sweeps.engine.progress import Progress, TrialRow
from sweeps.engine.search import Asha, tune_config
from sweeps.engine.study import StudyMirror
from sweeps.engine.trainable import TrialContext, run_trial
from sweeps.names import FAILED, PENDING, PRUNED, RUNNING, TEST_PROGRESS, TRIAL_STATUS

MAX_FAILURES = 2
"""Retries of a trial whose process raised or was lost; divergence is not retried."""
REPO_ROOT = str(Path(__file__).resolve().parents[2])


def outcome(trial) -> str:
    """running, pending, completed, pruned or failed, from Tune's status and the last result."""
    if trial.status == "ERROR":
        return FAILED
    if trial.status == "TERMINATED":
        # The trainable's last result, or the scheduler's stop, set trial_status (see
        # _SweepCallback); without one the trial was stopped by an interrupt and will resume.
        return trial.last_result.get(TRIAL_STATUS, PENDING)
    return RUNNING if trial.status == "RUNNING" else PENDING


def trial_rows(trials) -> list[TrialRow]:
    return [TrialRow(t.trial_id, outcome(t), int(t.last_result.get("epoch", 0)), dict(t.last_result),
                     dict(t.config), t.last_result.get(TEST_PROGRESS)) for t in trials]


@dataclass
class _Live:
    ctx: TrialContext
    progress: Progress
    rows: list[TrialRow]
    study: StudyMirror
    unclosed: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    """Trial id -> (outcome, reason) of runs the tracking server was away to close."""

    def close(self, trial_id: str, outcome_name: str, reason: str | None = None) -> None:
        """End a trial's run from outside it; if the server is away, keep it for later: an
        error raised in a Tune callback would end the whole sweep."""
        ctx = self.ctx
        try:
            tracking.close_trial_run(ctx.tracking_uri, ctx.experiment_id, ctx.parent_run_id,
                                     trial_id, outcome_name, reason)
            self.unclosed.pop(trial_id, None)
        except tracking.TrackingError as err:
            if trial_id not in self.unclosed:
                print(f"warning: {err}; the run of trial {trial_id} is ended later", file=sys.stderr, flush=True)
            self.unclosed[trial_id] = (outcome_name, reason)


_LIVE: dict[str, _Live] = {}
"""The sweep(s) this driver process is running, by name (see _SweepCallback)."""


class _SweepCallback(tune.Callback):
    """Driver side: the live table, ending the MLflow runs of trials whose process was
    stopped from outside (pruned by halving, lost), which cannot end their runs themselves, and
    the Optuna storage's copy of every finished trial.

    Tune pickles callbacks into the experiment and restores them on resume, when the tracking
    server may have a new address: this one carries only the sweep name and looks up the
    live context in _LIVE.
    """

    def __init__(self, name: str):
        self.name = name

    def on_trial_result(self, iteration, trials, trial, result, **info):
        # A result marked done that the trainable did not mark as its last is the one the
        # scheduler stopped the trial on. Tune lets callbacks edit results in place, and keeps
        # this one as the trial's last result (saved with the experiment, seen by the searcher).
        if result.get("done") and TRIAL_STATUS not in result:
            result[TRIAL_STATUS] = PRUNED

    def _record(self, trial, outcome_name: str | None) -> None:
        _LIVE[self.name].study.record(trial.trial_id, dict(trial.config), outcome_name, trial.last_result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        if trial.last_result.get(TRIAL_STATUS) == PRUNED:
            _LIVE[self.name].close(trial.trial_id, PRUNED,
                                   f"stopped by successive halving after epoch {trial.last_result.get('epoch')}")
        self._record(trial, trial.last_result.get(TRIAL_STATUS))

    def on_trial_error(self, iteration, trials, trial, **info):
        _LIVE[self.name].close(trial.trial_id, FAILED, trial.get_error() or "the trial's process failed")
        self._record(trial, FAILED)

    def on_step_end(self, iteration, trials, **info):
        live = _LIVE[self.name]
        live.rows[:] = trial_rows(trials)
        live.progress.update(live.rows)

    def on_experiment_end(self, trials, **info):
        _LIVE[self.name].rows[:] = trial_rows(trials)  # a resumed sweep with nothing left takes no step
        for trial in trials:  # trials that ended before this version wrote the storage
            self._record(trial, outcome(trial))


def local_capacity() -> dict[str, int] | None:
    """The CPUs and GPUs of the local Ray, which is one node: this machine's, and the GPUs that
    torch (so a trial) can use. None when RAY_ADDRESS names a cluster, whose nodes decide."""
    if os.environ.get("RAY_ADDRESS"):
        return None
    return {"cpu": os.cpu_count(), "gpu": torch.cuda.device_count()}


@contextlib.contextmanager
def local_ray():
    """Ray for this process: the cluster in RAY_ADDRESS, else a local Ray, quiet and without
    dashboard (reused when this process already has one)."""
    # Workers import `models` and `sweeps` from this checkout and resolve relative paths
    # (data prefixes, caches) from where the command was run, not from a trial directory.
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p)
    os.environ["RAY_CHDIR_TO_TRIAL_DIR"] = "0"
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the new output prints a banner even at verbose=0
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # MLflow is our logger
    # Per-epoch results lack the test objectives that only the final result carries.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    started, capacity = not ray.is_initialized(), local_capacity()
    if started and capacity is None:
        # A driver submitted as a Ray Job (the job sets RAY_ADDRESS), or pointed at a cluster:
        # join it with the resources its nodes declared.
        ray.init(log_to_driver=False, logging_level="ERROR", configure_logging=True)
    elif started:
        # address="local": never join a `ray start` cluster that merely runs on this machine.
        with _sigterm_blocked():
            ray.init(address="local", num_cpus=capacity["cpu"], num_gpus=capacity["gpu"], include_dashboard=False,
                     log_to_driver=False, logging_level="ERROR", configure_logging=True)
    # ray.init makes SIGTERM a SystemExit, which skips Tune's last save and ends the sweep as
    # failed with no trials; a `kill`, a scheduler's pre-emption or a job's stop means Ctrl-C.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if main else None
    try:
        yield
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
        if started:
            ray.shutdown()


@contextlib.contextmanager
def _sigterm_blocked():
    """SIGTERM blocked in this thread, so in the processes it starts: Ray's, and the trial
    workers they start, keep the mask through exec. `timeout`, a batch scheduler or a systemd
    stop sends SIGTERM to every process of a job: Ray's would end at once, and with them the
    driver's stop (no summary, the runs left RUNNING, the driver dying on a lost GCS). So the
    signal stops the driver alone, which stops the sweep as on Ctrl-C; `ray.shutdown` then ends
    Ray's processes by SIGKILL after a second each (PR_SET_PDEATHSIG still ends them if the
    driver is killed)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _interrupt(signum, frame) -> None:
    """SIGTERM as SIGINT: Tune's handler during `fit` (stop, save, return), else KeyboardInterrupt."""
    signal.raise_signal(signal.SIGINT)


def fit(ctx: TrialContext, name: str, storage: str, *, trials: int, max_concurrent: int,
        cpus: float, gpus: float, epochs: int, seed: int, restore: bool = False,
        asha: Asha = Asha(), rows: list[TrialRow] | None = None) -> list[TrialRow]:
    """Run (or, with restore, resume) the sweep; return every trial's final row.

    ROWS, if given, is kept current in place as trials change, so that a caller whom an
    exception interrupts mid-fit still has every trial as last seen."""
    progress = Progress(trials, epochs, ctx.space.objectives)
    path = os.path.join(storage, name)
    os.makedirs(path, exist_ok=True)
    _LIVE[name] = live = _Live(ctx, progress, [] if rows is None else rows, StudyMirror(path, name, ctx.space))
    trainable = tune.with_resources(tune.with_parameters(run_trial, ctx=ctx), {"cpu": cpus, "gpu": gpus})
    try:
        if restore:
            # Trials, searcher (the Optuna study) and the halving rungs (RungKeeper) come from the
            # experiment directory; finished trials stay finished, errored ones keep their failure.
            tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=False)
        else:
            config = tune_config(ctx.space, trials, max_concurrent, epochs, seed, asha)
            keeper = getattr(config.scheduler, "keeper", None)  # the halving rungs, saved with the experiment
            tuner = tune.Tuner(trainable, tune_config=config,
                               run_config=tune.RunConfig(
                                   name=name, storage_path=storage, verbose=0,
                                   callbacks=[_SweepCallback(name), *([keeper] if keeper else [])],
                                   failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
                                   checkpoint_config=tune.CheckpointConfig(num_to_keep=1)))
        tuner.fit()
        for trial_id, (outcome_name, reason) in list(live.unclosed.items()):  # the server may be back
            live.close(trial_id, outcome_name, reason)
    finally:
        del _LIVE[name]
    progress.update(live.rows)
    return live.rows


def can_resume(experiment_dir: str) -> bool:
    return tune.Tuner.can_restore(experiment_dir)
