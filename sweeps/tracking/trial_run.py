"""Each trial's child run: its config, per-epoch and test metrics, curves and outcome.

A retried or resumed trial finds and continues its own run, so a trial has one run
however often its process starts; a trial stopped from outside (halving, a lost node) has
its run ended by the driver (close_trial_run).
"""
from __future__ import annotations

import sys
import time

import yaml

from sweeps.names import (COMPLETED, FAILED, PRUNED, RUNNING, TEST, TRAIN_LOSS, TRIAL_STATUS, VAL, VAL_METRICS,
                          VAL_NEG_ELBO)
from sweeps.tracking.client import connect, log_params, server_call, server_errors
from sweeps.tracking.server import TrackingError
from sweeps.tracking.sweep_run import PARENT_TAG, TRIAL_TAG

# A trial's outcome as a tag; MLflow's own status says FINISHED / FAILED / KILLED.
OUTCOME_STATUS = {COMPLETED: "FINISHED", FAILED: "FAILED", PRUNED: "KILLED"}
CURVES = (TRAIN_LOSS, *VAL_METRICS)
MAX_TAG_CHARS = 5000
DIVERGED = "diverged: "
"""Prefix of the failure reason of a trial whose loss became NaN or infinite."""
VERDICT = "verdict"
"""A completed trial's tag: `models`' one line on whether its latent is active and why."""
ARITHMETIC = "arithmetic"
"""A trial's param (its first attempt's) and tag (with every attempt's): which arithmetic
`models` ran it with (kernels, torch's CPU instruction set or GPU): two trials whose numbers
differ only by it can be told apart."""
CONFIG_ARTIFACT = "config.yaml"
"""The resolved trial config on each child run (re-runnable by `train --config`)."""


def flatten(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


class TrialRun:
    """A trial's child run; a retried or resumed trial finds and continues its own run."""

    def __init__(self, uri: str, run_id: str):
        self.uri, self.client = uri, connect(uri)
        self.run_id = run_id
        self.behind = False
        """Whether the last log_epochs left epochs for later."""
        run = self.client.get_run(run_id)
        self.outcome = run.data.tags.get(TRIAL_STATUS)
        """As recorded by an earlier attempt: None, running, completed, pruned or failed."""
        self.reason = run.data.tags.get("failure_reason", "")
        self.test_metrics = {k: v for k, v in run.data.metrics.items() if k.startswith(TEST)}
        # MLflow keeps each metric's value at its highest step: for val/*, the last validation's.
        self.final_metrics = {k: v for k, v in run.data.metrics.items()
                              if k.startswith((TEST, VAL))} if self.outcome == COMPLETED else {}
        """What the final result of a trial that trained to the end reported (see engine.trainable)."""
        # Epochs up to here are already logged (in order, see log_epochs): a resumed trial
        # retrains at most the epochs after its last checkpoint, and must not log them twice.
        self.logged_epoch = self._last_logged()
        self.is_new = not run.data.params

    def _last_logged(self) -> int:
        return max((m.step for m in self.client.get_metric_history(self.run_id, VAL_NEG_ELBO)), default=0)

    @classmethod
    def find_or_create(cls, uri: str, experiment_id: str, parent_run_id: str, trial_id: str,
                       run_id: str | None = None) -> "TrialRun":
        """Run `run_id` (from the trial's checkpoint), else this trial's run if one exists
        (it died before its first checkpoint), else a new child run."""
        client = connect(uri)
        if run_id is None:
            found = _find(client, experiment_id, parent_run_id, trial_id)
            run_id = found.info.run_id if found else None
        if run_id is None:
            run_id = client.create_run(experiment_id, run_name=trial_id, tags={
                PARENT_TAG: parent_run_id, TRIAL_TAG: trial_id}).info.run_id
        return cls(uri, run_id)

    @property
    def settled(self) -> bool:
        """Whether an earlier attempt ended the trial for good: trained to the end, or diverged
        (deterministic). A driver killed right after may not have saved that in Tune's state."""
        return self.outcome == COMPLETED or (self.outcome == FAILED and self.reason.startswith(DIVERGED))

    def start(self) -> None:
        self.client.update_run(self.run_id, status="RUNNING")
        self.client.set_tag(self.run_id, TRIAL_STATUS, RUNNING)

    def record_placement(self, node_id: str, ip: str, hostname: str, device: str, arithmetic: str) -> None:
        """Where this attempt runs and with which arithmetic; `node.attempts` lists the node of
        every attempt, so a trial retried after losing its node shows where it moved, and
        `arithmetic.attempts` (one line each, `|` between) whether it moved to other arithmetic."""
        from mlflow.entities import RunTag
        tags = self.client.get_run(self.run_id).data.tags
        attempts, arithmetics = tags.get("node.attempts"), tags.get(f"{ARITHMETIC}.attempts")
        self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in {
            "node.id": node_id, "node.ip": ip, "node.hostname": hostname, "device": device,
            "node.attempts": f"{attempts},{node_id}" if attempts else node_id, ARITHMETIC: arithmetic,
            f"{ARITHMETIC}.attempts": f"{arithmetics} | {arithmetic}" if arithmetics else arithmetic}.items()])

    def log_config(self, config: dict, method: str | None, arithmetic: str) -> None:
        """Flattened params, the method (preset or joint-space choice), the arithmetic and the
        config as YAML, re-runnable by `train --config`."""
        if not self.is_new:
            return
        params = {k: str(v) for k, v in flatten(config).items()}
        params[ARITHMETIC] = arithmetic
        if method is not None:
            params["method"] = method
        log_params(self.client, self.run_id, params)
        self.client.log_text(self.run_id, yaml.safe_dump(config, sort_keys=False), CONFIG_ARTIFACT)

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[
            Metric(k, float(v), now, step) for k, v in metrics.items()])

    def log_epochs(self, history: dict[int, dict[str, float]], *, required: bool = False) -> bool:
        """Log the epochs of HISTORY (epoch -> metrics, the trial's every epoch so far) that
        the server does not have yet, in order. Whether all are logged: a server that is down
        or restarting leaves the rest for the next call (the trial keeps HISTORY in its
        checkpoint), unless REQUIRED, when its TrackingError is raised."""
        try:
            with server_errors(self.uri):
                if self.behind:  # a batch whose answer was lost may have been written
                    self.logged_epoch = self._last_logged()
                for epoch in sorted(e for e in history if e > self.logged_epoch):
                    self.log_metrics(epoch, history[epoch])
                    self.logged_epoch = epoch
        except TrackingError as err:
            if required:
                raise
            if not self.behind:  # once per outage, not every epoch
                print(f"warning: {err}; keeping epochs from {self.logged_epoch + 1} for when it is back",
                      file=sys.stderr, flush=True)
            self.behind = True
            return False
        self.behind = False
        return True

    def log_final(self, epoch: int, metrics: dict[str, float], verdict: str) -> None:
        if not self.test_metrics:
            self.log_metrics(epoch, metrics)
            self.test_metrics = {k: v for k, v in metrics.items() if k.startswith(TEST)}
        self.client.set_tag(self.run_id, VERDICT, verdict[:MAX_TAG_CHARS])

    def finish(self, outcome: str, reason: str | None = None,
               history: dict[int, dict[str, float]] | None = None) -> None:
        """Plot the curves (from HISTORY, the trial's every epoch, else from the server),
        record the outcome (and why it failed) and end the run."""
        if history is None:
            curves = {key: [(m.step, m.value) for m in self.client.get_metric_history(self.run_id, key)]
                      for key in CURVES}
        else:
            curves = {key: [(epoch, metrics[key]) for epoch, metrics in history.items() if key in metrics]
                      for key in CURVES}
        self.client.log_figure(self.run_id, curves_figure(curves), "curves.png")
        self.client.set_tag(self.run_id, TRIAL_STATUS, outcome)
        if reason:
            self.client.set_tag(self.run_id, "failure_reason", reason[:MAX_TAG_CHARS])
            self.client.log_text(self.run_id, reason, "failure.txt")
        self.client.set_terminated(self.run_id, OUTCOME_STATUS[outcome])


@server_call
def close_trial_run(uri: str, experiment_id: str, parent_run_id: str, trial_id: str,
                    outcome: str, reason: str | None = None) -> None:
    """End a trial's run from outside it, if it is still open: its process was stopped
    by the scheduler or lost, so the trial could not end the run itself. A trial whose
    process was lost before it created its run (its node died as it started) gets one
    here, so that every trial of the sweep has its run."""
    found = _find(connect(uri), experiment_id, parent_run_id, trial_id)
    if found is None or found.info.status == "RUNNING":
        TrialRun.find_or_create(uri, experiment_id, parent_run_id, trial_id,
                                found.info.run_id if found else None).finish(outcome, reason)


def _find(client, experiment_id: str, parent_run_id: str, trial_id: str):
    """The trial's child run, or None if it has none yet."""
    found = client.search_runs([experiment_id], max_results=1, filter_string=(
        f"tags.{TRIAL_TAG} = '{trial_id}' and tags.`{PARENT_TAG}` = '{parent_run_id}'"))
    return found[0] if found else None


def curves_figure(curves: dict[str, list[tuple[int, float]]]):
    """One panel per metric of CURVES: its (epoch, value) points."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 3, figsize=(11, 6), constrained_layout=True)
    for ax, key in zip(axes.flat, CURVES):
        points = sorted(curves.get(key, []))
        if points:
            ax.plot(*zip(*points), marker="o", markersize=3)
        ax.set_title(key)
        ax.set_xlabel("epoch")
    plt.close(fig)
    return fig
