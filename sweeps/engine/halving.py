"""Asynchronous successive halving on every objective at once.

ASHA (Li et al. 2020, as Ray's ASHAScheduler) ranks the trials reaching a rung on one metric.
On a sweep of NLL against active units that metric is the validation loss, and the trials that
keep their latent, whose loss is a little worse, are the ones it stops: the front loses its
high-AU end before any of it is trained. Here a trial goes on from a rung when it is among the
best ⌊n/η⌋ (at least one) of the n trials recorded there on *any* objective's validation
metric, so each objective keeps its own top share. With one objective this is ASHA's rule.

Tune saves neither ASHA's rungs nor ours with the experiment, so a resumed sweep would judge
its next trials against empty rungs and keep them all. The rungs travel as the state of a
callback (`RungKeeper`), which Tune saves with each experiment checkpoint, together with the
trials and the searcher, and restores on resume.
"""
from __future__ import annotations

import math

from ray import tune
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from sweeps.names import TEST_PROGRESS, TRIAL_STATUS, VALIDATION_OF


def rung_metrics(objectives) -> dict[str, str]:
    """Validation metric -> mode, one per objective (val/* objectives stand for themselves)."""
    out: dict[str, str] = {}
    for objective in objectives:
        out.setdefault(VALIDATION_OF.get(objective.metric, objective.metric), objective.mode)
    return out


def milestones(grace: int, eta: float, max_t: int) -> list[int]:
    """ASHA's rungs: grace·ηᵏ epochs, up to max_t."""
    out, k = [], 0
    while round(grace * eta ** k) <= max_t:
        out.append(round(grace * eta ** k))
        k += 1
    return sorted(set(out))


def promising(recorded: dict[str, dict[str, float]], trial_id: str, metrics: dict[str, str], eta: float) -> bool:
    """Whether `trial_id` is among the best max(1, ⌊n/η⌋) of the n recorded trials on some metric.

    A trial counts the others at least as good as it: on a metric where all are equal (every
    trial at AU 0) no trial is ahead, so that metric keeps nobody. A missing or NaN value is
    the worst."""
    keep = max(1, int(len(recorded) / eta))
    if len(recorded) <= 1:
        return True
    mine = recorded[trial_id]
    for metric, mode in metrics.items():
        sign = 1.0 if mode == "min" else -1.0

        def score(values: dict[str, float]) -> float:
            value = values.get(metric)
            return math.inf if value is None or math.isnan(value) else sign * value

        others = [score(v) for t, v in recorded.items() if t != trial_id]
        if sum(s <= score(mine) for s in others) < keep and not all(s == score(mine) for s in others):
            return True
    return False


class ObjectiveHalving(FIFOScheduler):
    """Stops a trial at a rung unless `promising` on one of `metrics` (validation metric -> mode);
    the last epoch is never a rung, so a trial that trained to the end gets its test evaluation."""

    def __init__(self, metrics: dict[str, str], grace: int, eta: float, max_t: int):
        super().__init__()
        self.metrics, self.eta = metrics, eta
        self.rungs = {milestone: {} for milestone in milestones(grace, eta, max_t)}
        self.keeper = RungKeeper(self)
        """Put it in the run's callbacks: the rungs are saved and restored with the experiment."""

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        epoch = result.get("epoch")
        if epoch is None or TRIAL_STATUS in result or TEST_PROGRESS in result:  # a trial's test or end is no rung
            return TrialScheduler.CONTINUE
        for milestone in sorted(self.rungs, reverse=True):  # the highest rung passed, as ASHA
            recorded = self.rungs[milestone]
            if epoch >= milestone and trial.trial_id not in recorded:
                recorded[trial.trial_id] = {m: result.get(m) for m in self.metrics}
                if not promising(recorded, trial.trial_id, self.metrics, self.eta):
                    return TrialScheduler.STOP
                break
        return TrialScheduler.CONTINUE


class RungKeeper(tune.Callback):
    """The rungs of a scheduler as callback state. Tune pickles the tune and run configs in
    one object, so after a restore this keeper still holds the scheduler Tune decides with."""

    def __init__(self, scheduler: ObjectiveHalving):
        self.scheduler = scheduler

    def get_state(self) -> dict:
        return {"rungs": self.scheduler.rungs}

    def set_state(self, state: dict) -> None:
        self.scheduler.rungs = state["rungs"]
