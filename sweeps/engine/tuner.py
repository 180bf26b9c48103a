"""Ray Tune and Optuna for sweeps: the trainable, the searcher, the scheduler, the Tuner.

Every Ray Tune and Optuna call of the project lives here, so the next Ray API move
touches one file. Optuna proposes (TPE, multi-objective over the space's objectives),
a ConcurrencyLimiter bounds trials in flight, ASHA stops hopeless trials on the
validation loss reported every epoch, and each trial trains through `models.train`,
checkpointing through Tune every epoch and logging to its own MLflow child run.
"""
from __future__ import annotations

import contextlib
import glob
import os
import socket
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

import optuna
import ray
import torch
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

import models
from models.loop import resolve_device
from sweeps import tracking
from sweeps.engine.progress import Progress, TrialRow
from sweeps.space import METHOD, SearchSpace

SCHEDULER_METRIC = "val/neg_elbo"
STATE_FILE = "train.pt"
RUN_ID_FILE = "mlflow_run_id"
MAX_FAILURES = 2
"""Retries of a trial whose process raised or was lost; divergence is not retried."""
REPO_ROOT = str(Path(__file__).resolve().parents[2])

optuna.logging.set_verbosity(optuna.logging.WARNING)  # one INFO line per trial otherwise


@dataclass(frozen=True)
class TrialContext:
    """What every trial needs besides its sampled values."""
    space: SearchSpace
    overrides: dict
    tracking_uri: str
    experiment_id: str
    parent_run_id: str


@dataclass(frozen=True)
class Asha:
    grace_period: int | None = None
    """First rung, in epochs; None: a tenth of the epochs (at least 1), so KL warm-ups
    (10 epochs in He et al. App. B) are not judged on their first epoch."""
    reduction_factor: float = 3.0


def sample_config(space: SearchSpace, overrides: dict, seed: int = 0) -> dict:
    """One trial's full config, sampled outside Ray: checks `--set` values before any
    resource starts (raises ConfigError or SpaceError)."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return space.trial_config(space.define_by_run(study.ask()), overrides)


def run_trial(sampled: dict, ctx: TrialContext) -> None:
    """Tune function trainable: train one sampled config, reporting every epoch."""
    trial_id = tune.get_context().get_trial_id()
    with contextlib.ExitStack() as stack:
        state, run_id = None, None
        checkpoint = tune.get_checkpoint()
        if checkpoint:  # a retried or resumed trial: its last epoch and its own MLflow run
            saved = stack.enter_context(checkpoint.as_directory())
            state = os.path.join(saved, STATE_FILE)
            run_id = Path(saved, RUN_ID_FILE).read_text().strip()
        out_dir = stack.enter_context(tempfile.TemporaryDirectory())
        run = tracking.TrialRun.find_or_create(ctx.tracking_uri, ctx.experiment_id, ctx.parent_run_id,
                                               trial_id, run_id)
        if run.settled:  # ended before an interrupted driver saved it: report that end again
            _report_end(run.outcome, run.logged_epoch, run.test_metrics, run.reason)
            return
        run.start()

        def on_epoch(report: models.EpochReport) -> None:
            # MLflow first: a crash between the two retrains this epoch, which log_epoch skips.
            run.log_epoch(report.epoch, report.metrics)
            with tempfile.TemporaryDirectory() as tmp:
                report.save_checkpoint(os.path.join(tmp, STATE_FILE))
                Path(tmp, RUN_ID_FILE).write_text(run.run_id)
                tune.report({**report.metrics, "epoch": report.epoch},
                            checkpoint=tune.Checkpoint.from_directory(tmp))

        try:
            config = ctx.space.trial_config(sampled, ctx.overrides)
            run.log_config(config, sampled.get(METHOD, ctx.space.method))
            run.record_placement(**_placement(config))
            result = models.train(config, on_epoch=on_epoch, out_dir=out_dir, resume_from=state)
        except (models.TrainingDiverged, models.ConfigError) as err:
            # Deterministic: a retry would fail the same way. End the trial with a result, not an error.
            reason = (f"{tracking.DIVERGED}{err}" if isinstance(err, models.TrainingDiverged)
                      else f"config rejected by models: {err}")
            run.finish("failed", reason)
            _report_end("failed", run.logged_epoch, {}, reason)
            return
        except Exception:
            run.finish("failed", traceback.format_exc())
            raise  # worker-side trouble: Tune retries it (FailureConfig) from the checkpoint
        test = {f"test/{k}": v for k, v in result["test"].items()}
        run.log_final(result["epochs"], {**test, "wall_time": result["wall_time"]})
        for figure in sorted(glob.glob(os.path.join(out_dir, "*.png"))):  # figures models wrote
            run.client.log_artifact(run.run_id, figure)
        run.finish("completed")
        _report_end("completed", result["epochs"], test)


def _placement(config: dict) -> dict[str, str]:
    """The node this trial process runs on and the torch device its config resolves to there
    (Ray makes the trial's own GPUs, and only those, visible to it)."""
    device = resolve_device(models.parse_config(config).device)
    if device.type == "cuda":
        index = torch.cuda.current_device() if device.index is None else device.index
        name = f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    else:
        name = str(device)
    return {"node_id": ray.get_runtime_context().get_node_id(), "ip": ray.util.get_node_ip_address(),
            "hostname": socket.gethostname(), "device": name}


def _report_end(status: str, epoch: int, test: dict, reason: str = "") -> None:
    """A trial's last result: `trial_status` tells the searcher and the driver that the
    trial ended by itself (a trial stopped by ASHA never reports one)."""
    tune.report({**test, "epoch": epoch, "trial_status": status, **({"reason": reason} if reason else {})})


class ParetoSafeOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna COMPLETE only for trials that trained to the end.

    Ray's OptunaSearch tells a trial COMPLETE with whatever its last result holds. A trial
    ASHA stopped early ends on a per-epoch result: told as complete, its truncated (or
    missing) objectives would enter TPE's model and the Pareto front. It is PRUNED; a trial
    that diverged is FAIL. The trainable marks the end of training with trial_status.
    """

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """The objectives are test metrics, known only at the end: nothing to report before."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        status = (result or {}).get("trial_status")
        if status == "completed":
            super().on_trial_complete(trial_id, result, error)
        else:  # without a result Ray tells PRUNED, or FAIL when error
            super().on_trial_complete(trial_id, None, error or status == "failed")


def outcome(trial) -> str:
    """running, pending, completed, pruned or failed, from Tune's status and the last result."""
    if trial.status == "ERROR":
        return "failed"
    if trial.status == "TERMINATED":
        # The trainable's last result, or the scheduler's stop, set trial_status (see
        # _SweepCallback); without one the trial was stopped by an interrupt and will resume.
        return trial.last_result.get("trial_status", "pending")
    return "running" if trial.status == "RUNNING" else "pending"


def trial_rows(trials) -> list[TrialRow]:
    return [TrialRow(t.trial_id, outcome(t), int(t.last_result.get("epoch", 0)), dict(t.last_result),
                     dict(t.config)) for t in trials]


@dataclass
class _Live:
    ctx: TrialContext
    progress: Progress
    rows: list[TrialRow]


_LIVE: dict[str, _Live] = {}
"""The sweep(s) this driver process is running, by name (see _SweepCallback)."""


class _SweepCallback(tune.Callback):
    """Driver side: the live table, and ending the MLflow runs of trials whose process was
    stopped from outside (pruned by ASHA, lost), which cannot end their runs themselves.

    Tune pickles callbacks into the experiment and restores them on resume, when the tracking
    server may have a new address: this one carries only the sweep name and looks up the
    live context in _LIVE.
    """

    def __init__(self, name: str):
        self.name = name

    def _close(self, trial, outcome_name: str, reason: str | None = None) -> None:
        ctx = _LIVE[self.name].ctx
        tracking.close_trial_run(ctx.tracking_uri, ctx.experiment_id, ctx.parent_run_id,
                                 trial.trial_id, outcome_name, reason)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        # A result marked done that the trainable did not mark as its last is the one the
        # scheduler stopped the trial on. Tune lets callbacks edit results in place, and keeps
        # this one as the trial's last result (saved with the experiment, seen by the searcher).
        if result.get("done") and "trial_status" not in result:
            result["trial_status"] = "pruned"

    def on_trial_complete(self, iteration, trials, trial, **info):
        if trial.last_result.get("trial_status") == "pruned":
            self._close(trial, "pruned", f"stopped by ASHA after epoch {trial.last_result.get('epoch')}")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._close(trial, "failed", trial.get_error() or "the trial's process failed")

    def on_step_end(self, iteration, trials, **info):
        live = _LIVE[self.name]
        live.rows = trial_rows(trials)
        live.progress.update(live.rows)

    def on_experiment_end(self, trials, **info):
        _LIVE[self.name].rows = trial_rows(trials)  # a resumed sweep with nothing left takes no step


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
    started = not ray.is_initialized()
    if started and os.environ.get("RAY_ADDRESS"):
        # A driver submitted as a Ray Job (the job sets RAY_ADDRESS), or pointed at a cluster:
        # join it with the resources its nodes declared.
        ray.init(log_to_driver=False, logging_level="ERROR", configure_logging=True)
    elif started:
        # address="local": never join a `ray start` cluster that merely runs on this machine.
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR", configure_logging=True)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def fit(ctx: TrialContext, name: str, storage: str, *, trials: int, max_concurrent: int,
        cpus: float, gpus: float, epochs: int, seed: int, restore: bool = False,
        asha: Asha = Asha()) -> list[TrialRow]:
    """Run (or, with restore, resume) the sweep; return every trial's final row."""
    progress = Progress(trials, epochs, ctx.space.objectives)
    _LIVE[name] = live = _Live(ctx, progress, [])
    trainable = tune.with_resources(tune.with_parameters(run_trial, ctx=ctx), {"cpu": cpus, "gpu": gpus})
    path = os.path.join(storage, name)
    try:
        if restore:
            # Trials, searcher (the Optuna study) and scheduler state come from the experiment
            # directory; finished trials stay finished, errored ones keep their recorded failure.
            tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=False)
        else:
            tuner = tune.Tuner(trainable, tune_config=_tune_config(ctx.space, trials, max_concurrent,
                                                                   epochs, seed, asha),
                               run_config=tune.RunConfig(
                                   name=name, storage_path=storage, verbose=0,
                                   callbacks=[_SweepCallback(name)],
                                   failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
                                   checkpoint_config=tune.CheckpointConfig(num_to_keep=1)))
        tuner.fit()
    finally:
        del _LIVE[name]
    progress.update(live.rows)
    return live.rows


def _tune_config(space: SearchSpace, trials: int, max_concurrent: int, epochs: int, seed: int,
                 asha: Asha) -> tune.TuneConfig:
    metrics, modes = [o.metric for o in space.objectives], [o.mode for o in space.objectives]
    searcher = ParetoSafeOptunaSearch(
        space=space.define_by_run, metric=metrics if len(metrics) > 1 else metrics[0],
        mode=modes if len(modes) > 1 else modes[0], sampler=_sampler(space, seed))
    # A grid's trials are replicates or a one-parameter curve: each trains to the end.
    scheduler = FIFOScheduler() if space.sampler == "grid" else _scheduler(epochs, asha)
    return tune.TuneConfig(search_alg=ConcurrencyLimiter(searcher, max_concurrent=max_concurrent),
                           scheduler=scheduler, num_samples=trials,
                           reuse_actors=True)  # a new actor re-imports torch and MLflow: seconds per trial


def _sampler(space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
    if space.sampler == "grid":
        return optuna.samplers.GridSampler({p.key: list(p.choices) for p in space.params}, seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _scheduler(epochs: int, asha: Asha):
    """ASHA on the validation loss, with no rung at the last epoch: a trial that trained to
    the end is worth its test evaluation (and stop_last_trials=False lets it get there)."""
    grace = asha.grace_period or max(1, epochs // 10)
    if epochs - 1 < grace:
        return FIFOScheduler()
    return ASHAScheduler(time_attr="epoch", metric=SCHEDULER_METRIC, mode="min", max_t=epochs - 1,
                         grace_period=grace, reduction_factor=asha.reduction_factor, stop_last_trials=False)


def can_resume(experiment_dir: str) -> bool:
    return tune.Tuner.can_restore(experiment_dir)


def load_study(experiment_dir: str) -> optuna.Study:
    """The Optuna study of a sweep as its searcher last saved it in the experiment directory
    (the ConcurrencyLimiter saves its searcher's state). OptunaSearch has no public getter."""
    searcher = ParetoSafeOptunaSearch()
    searcher.restore_from_dir(experiment_dir)
    return searcher._ot_study
