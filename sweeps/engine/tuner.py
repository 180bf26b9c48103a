"""The Tuner: a local Ray (or the cluster's), the sweep's Tune experiment, the driver's callback.

`SweepFit.run` runs or resumes a sweep and returns every trial's row; its callback keeps the
rows and the live table, ends the MLflow runs of trials stopped from outside their process
and writes each finished trial to the sweep's Optuna storage (study.py).
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
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


def ending(trial, pruned: set[str]) -> str | None:
    """How a trial ended, if it reported its end (its last result's trial_status) or the
    scheduler stopped it (PRUNED: those trials' ids, see _SweepCallback)."""
    # Earlier versions marked a pruned trial's last result instead: sweeps they saved resume too.
    return trial.last_result.get(TRIAL_STATUS) or (PRUNED if trial.trial_id in pruned else None)


def outcome(trial, pruned: set[str]) -> str:
    """running, pending, completed, pruned or failed, from Tune's status and how it ended."""
    if trial.status == "ERROR":
        return FAILED
    if trial.status == "TERMINATED":  # without an ending, stopped by an interrupt: it will resume
        return ending(trial, pruned) or PENDING
    return RUNNING if trial.status == "RUNNING" else PENDING


def trial_rows(trials, pruned: set[str]) -> list[TrialRow]:
    return [TrialRow(t.trial_id, outcome(t, pruned), int(t.last_result.get("epoch", 0)), dict(t.last_result),
                     dict(t.config), t.last_result.get(TEST_PROGRESS)) for t in trials]


class SweepFit:
    """One sweep's Tune experiment, run or resumed by this process, and what its driver sees.

    `rows` holds every trial as last seen, also after an exception (a second Ctrl-C) ended
    `run`; the callback keeps it, the live table and the Optuna storage current, and ends the
    MLflow runs of trials stopped from outside their process.
    """

    def __init__(self, ctx: TrialContext, name: str, storage: str, *, trials: int, max_concurrent: int,
                 cpus: float, gpus: float, epochs: int, seed: int, asha: Asha = Asha()):
        self.ctx, self.name, self.storage = ctx, name, storage
        self.trials, self.max_concurrent, self.epochs, self.seed, self.asha = trials, max_concurrent, epochs, seed, asha
        self.resources = {"cpu": cpus, "gpu": gpus}
        self.progress = Progress(trials, epochs, ctx.space.objectives)
        self.rows: list[TrialRow] = []
        self.unclosed: dict[str, tuple[str, str | None]] = {}
        """Trial id -> (outcome, reason) of runs the tracking server was away to close."""
        self.study: StudyMirror | None = None

    def run(self, restore: bool = False) -> list[TrialRow]:
        """Run (or, with restore, resume) the sweep; return every trial's final row."""
        path = os.path.join(self.storage, self.name)
        os.makedirs(path, exist_ok=True)
        self.study = StudyMirror(path, self.name, self.ctx.space)
        trainable = tune.with_resources(tune.with_parameters(run_trial, ctx=self.ctx), self.resources)
        if restore:
            # Trials, searcher (the Optuna study), the halving rungs (RungKeeper) and the callback
            # come from the experiment directory; finished trials stay finished, errored ones keep
            # their failure.
            tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=False)
            callback = _restored_callback(tuner)
        else:
            config = tune_config(self.ctx.space, self.trials, self.max_concurrent, self.epochs, self.seed, self.asha)
            keeper = getattr(config.scheduler, "keeper", None)  # the halving rungs, saved with the experiment
            callback = _SweepCallback()
            tuner = tune.Tuner(trainable, tune_config=config,
                               run_config=tune.RunConfig(
                                   name=self.name, storage_path=self.storage, verbose=0,
                                   callbacks=[callback, *([keeper] if keeper else [])],
                                   failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
                                   checkpoint_config=tune.CheckpointConfig(num_to_keep=1)))
        callback.fit = self
        tuner.fit()
        for trial_id, (outcome_name, reason) in list(self.unclosed.items()):  # the server may be back
            self.close(trial_id, outcome_name, reason)
        self.progress.update(self.rows)
        return self.rows

    def observe(self, trials, pruned: set[str]) -> None:
        self.rows = trial_rows(trials, pruned)
        self.progress.update(self.rows)

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


class _SweepCallback(tune.Callback):
    """Driver side: the live table, ending the MLflow runs of trials whose process was
    stopped from outside (pruned by halving, lost), which cannot end their runs themselves, and
    the Optuna storage's copy of every finished trial, all through `fit` (SweepFit).

    Tune pickles callbacks into the experiment and restores them on resume, when the tracking
    server may have a new address and the terminal is another: this one pickles without its
    SweepFit, which the SweepFit running it sets.
    """

    def __init__(self):
        self.fit: SweepFit | None = None
        self.pruned: set[str] = set()
        """The trials the scheduler stopped; Tune saves it with the experiment (get_state)."""

    def __reduce__(self):
        return _SweepCallback, ()  # pickled without its SweepFit, which belongs to this process

    def __setstate__(self, state: dict) -> None:
        self.__init__()  # one pickled before __reduce__ (its state, the sweep's name, is not needed)

    def get_state(self) -> dict:
        return {"pruned": sorted(self.pruned)}

    def set_state(self, state: dict) -> None:
        self.pruned = set(state["pruned"])

    def on_trial_result(self, iteration, trials, trial, result, **info):
        # A result marked done that the trainable did not mark as its last is the one the
        # scheduler stopped the trial on (the searcher tells Optuna PRUNED without a mark).
        if result.get("done") and TRIAL_STATUS not in result:
            self.pruned.add(trial.trial_id)

    def _record(self, trial, outcome_name: str | None) -> None:
        self.fit.study.record(trial.trial_id, dict(trial.config), outcome_name, trial.last_result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        ended = ending(trial, self.pruned)
        if ended == PRUNED:
            self.fit.close(trial.trial_id, PRUNED,
                           f"stopped by successive halving after epoch {trial.last_result.get('epoch')}")
        self._record(trial, ended)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.fit.close(trial.trial_id, FAILED, trial.get_error() or "the trial's process failed")
        self._record(trial, FAILED)

    def on_step_end(self, iteration, trials, **info):
        self.fit.observe(trials, self.pruned)

    def on_experiment_end(self, trials, **info):
        self.fit.observe(trials, self.pruned)  # a resumed sweep with nothing left takes no step
        for trial in trials:  # trials that ended before this version wrote the storage
            self._record(trial, outcome(trial, self.pruned))


def _restored_callback(tuner: tune.Tuner) -> _SweepCallback:
    """The callback Tune unpickled with the experiment: `Tuner.restore` takes no callbacks, and
    a Tuner has no public getter for its run config."""
    return next(c for c in tuner._local_tuner.get_run_config().callbacks if isinstance(c, _SweepCallback))


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


def can_resume(experiment_dir: str) -> bool:
    return tune.Tuner.can_restore(experiment_dir)
