"""The trial function: one sampled config trained through `models.train`, reporting to Tune.

A plain function trainable (Ray Tune's examples): it reports every epoch with a checkpoint,
so a retried or resumed trial continues from its last epoch in its own MLflow child run, then
the test evaluation's progress (results with `TEST_PROGRESS`), and ends with a result marked by
`trial_status` (see search.ParetoSafeOptunaSearch).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

import ray
import torch
from ray import tune

import models
from models.data import DataError
from models.loop import resolve_device
from sweeps import tracking
from sweeps.names import COMPLETED, FAILED, TEST, TEST_PROGRESS, TRIAL_STATUS, VAL
from sweeps.space import METHOD, SearchSpace

STATE_FILE = "train.pt"
RUN_ID_FILE = "mlflow_run_id"
DETERMINISTIC = {models.TrainingDiverged: tracking.DIVERGED, models.ConfigError: "config rejected by models: ",
                 DataError: "data rejected by models: "}
"""The failures of a trial that end it at once, and the prefix of their reason."""
HISTORY_FILE = "metrics.json"
"""Every epoch's metrics so far, in the checkpoint: what the tracking server missed while it
was away is written when it is back, by this attempt or the next."""
SERVER_WAIT_S = 120
"""How long a trial waits at its start for the tracking server (a local one restarting)."""


@dataclass(frozen=True)
class TrialContext:
    """What every trial needs besides its sampled values."""
    space: SearchSpace
    overrides: dict
    tracking_uri: str
    experiment_id: str
    parent_run_id: str


def run_trial(sampled: dict, ctx: TrialContext) -> None:
    """Tune function trainable: train one sampled config, reporting every epoch."""
    trial_id = tune.get_context().get_trial_id()
    with contextlib.ExitStack() as stack:
        state, run_id, history = None, None, {}
        checkpoint = tune.get_checkpoint()
        if checkpoint:  # a retried or resumed trial: its last epoch and its own MLflow run
            saved = stack.enter_context(checkpoint.as_directory())
            state = os.path.join(saved, STATE_FILE)
            run_id = Path(saved, RUN_ID_FILE).read_text().strip()
            history = {int(e): m for e, m in json.loads(Path(saved, HISTORY_FILE).read_text()).items()}
        out_dir = stack.enter_context(tempfile.TemporaryDirectory())
        tracking.Server(ctx.tracking_uri, timeout=SERVER_WAIT_S).ready()
        run = tracking.TrialRun.find_or_create(ctx.tracking_uri, ctx.experiment_id, ctx.parent_run_id,
                                               trial_id, run_id)
        if run.settled:  # ended before an interrupted driver saved it: report that end again
            _report_end(run.outcome, run.logged_epoch, run.final_metrics, run.reason)
            return
        run.start()
        run.log_epochs(history)  # what the server missed before this attempt

        def on_epoch(report: models.EpochReport) -> None:
            history[report.validation] = report.metrics
            run.log_epochs(history)  # without the server, training goes on: kept for when it is back
            with tempfile.TemporaryDirectory() as tmp:
                report.save_checkpoint(os.path.join(tmp, STATE_FILE))
                Path(tmp, RUN_ID_FILE).write_text(run.run_id)
                Path(tmp, HISTORY_FILE).write_text(json.dumps(history))
                tune.report({**report.metrics, "epoch": report.validation},
                            checkpoint=tune.Checkpoint.from_directory(tmp))

        def on_test(progress: models.EvaluationProgress) -> None:
            # For the live table: a long test shows as such. The last epoch's metrics and number
            # come along, so that the trial's row keeps them and no scheduler sees a new epoch.
            epoch = max(history, default=0)
            tune.report({**history.get(epoch, {}), "epoch": epoch, TEST_PROGRESS: progress.fraction,
                         "test_time": progress.seconds})

        try:
            config = ctx.space.trial_config(sampled, ctx.overrides)
            arithmetic = models.arithmetic(config)
            run.log_config(config, sampled.get(METHOD, ctx.space.method), arithmetic)
            run.record_placement(**_placement(config), arithmetic=arithmetic)
            result = models.train(config, on_epoch=on_epoch, out_dir=out_dir, resume_from=state, on_test=on_test)
            test, final = _final_metrics(result)
        except tuple(DETERMINISTIC) as err:
            # A retry would fail the same way. End the trial with a result, not an error.
            reason = next(prefix for kind, prefix in DETERMINISTIC.items() if isinstance(err, kind)) + str(err)
            run.finish(FAILED, reason, history)
            _report_end(FAILED, run.logged_epoch, {}, reason)
            return
        except Exception:
            run.finish(FAILED, traceback.format_exc(), history)
            raise  # worker-side trouble: Tune retries it (FailureConfig) from the checkpoint
        # Every epoch before the end: a server still away fails the attempt, and Tune retries it
        # from its last checkpoint, which holds them.
        run.log_epochs(history, required=True)
        run.log_final(result["epochs"], {**test, "wall_time": result["wall_time"], "test_time": result["test_time"]},
                      result["verdict"])
        # What models wrote for people (figures, samples.txt, reconstructions.txt) and the model
        # file, not the checkpoint: optimiser state for resuming, which the trial no longer needs.
        for name in sorted(os.listdir(out_dir)):
            if name.endswith((".png", ".txt")) or name == models.MODEL_FILE:
                run.client.log_artifact(run.run_id, os.path.join(out_dir, name))
        run.finish(COMPLETED, history=history)
        _report_end(COMPLETED, result["epochs"], final)


def _final_metrics(result: dict) -> tuple[dict, dict]:
    """The test metrics, and what the final result reports: those and the last validation's,
    which objectives may name too. Raises TrainingDiverged if one is NaN or infinite: such a
    value would rank first or never be dominated, and Optuna refuses it."""
    test = {TEST + k: v for k, v in result["test"].items()}
    final = {**test, **{k: v for k, v in result["history"][-1].items() if k.startswith(VAL)}}
    bad = [f"{k}={v}" for k, v in final.items() if not math.isfinite(v)]
    if bad:
        raise models.TrainingDiverged(f"final metrics not finite: {', '.join(bad)}")
    return test, final


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
    trial ended by itself (a trial stopped by halving never reports one)."""
    tune.report({**test, "epoch": epoch, TRIAL_STATUS: status, **({"reason": reason} if reason else {})})
