"""Successive halving on every objective: a trial that keeps its latent (high AU, slightly
worse loss) survives a rung that ASHA on the loss alone would stop it at."""
import signal
import sys
import tempfile
from pathlib import Path

import pytest
from ray import cloudpickle, tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from sweeps.engine.halving import ObjectiveHalving, milestones, promising, rung_metrics
from sweeps.space import Objective

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import a test module
NLL_AU = rung_metrics([Objective("test/nll", "min"), Objective("test/au", "max")])


def test_objectives_map_to_their_validation_metrics():
    assert NLL_AU == {"val/neg_elbo": "min", "val/au": "max"}
    assert rung_metrics([Objective("test/ppl", "min"), Objective("val/mi", "max")]) == {
        "val/neg_elbo": "min", "val/mi": "max"}


def test_rungs_are_ashas():
    assert milestones(1, 3, 7) == [1, 3]
    assert milestones(2, 2, 9) == [2, 4, 8]


def test_each_objective_keeps_its_own_best_share():
    recorded = {"low-loss": {"val/neg_elbo": 38.0, "val/au": 0}, "collapsed": {"val/neg_elbo": 39.0, "val/au": 0},
                "worse": {"val/neg_elbo": 40.0, "val/au": 0}, "active": {"val/neg_elbo": 39.5, "val/au": 12}}
    kept = {t for t in recorded if promising(recorded, t, NLL_AU, eta=3)}
    # ⌊4/3⌋ = 1 per metric: the lowest loss, and the only trial with active units.
    assert kept == {"low-loss", "active"}
    # On the loss alone (ASHA's rule) the active trial is stopped.
    assert {t for t in recorded if promising(recorded, t, {"val/neg_elbo": "min"}, eta=3)} == {"low-loss"}


def test_a_metric_equal_for_all_keeps_nobody_and_a_lone_trial_goes_on():
    recorded = {"a": {"val/neg_elbo": 38.0, "val/au": 0}, "b": {"val/neg_elbo": 39.0, "val/au": 0}}
    assert [promising(recorded, t, NLL_AU, eta=2) for t in "ab"] == [True, False]
    assert promising({"a": {"val/neg_elbo": 99.0, "val/au": 0}}, "a", NLL_AU, eta=2)
    nan = {"a": {"val/neg_elbo": float("nan"), "val/au": 0}, "b": {"val/neg_elbo": 39.0, "val/au": 0}}
    assert [promising(nan, t, NLL_AU, eta=2) for t in "ab"] == [False, True]


def test_scheduler_decides_once_per_rung_on_the_highest_rung_passed():
    scheduler = ObjectiveHalving(NLL_AU, grace=1, eta=2, max_t=3)  # rungs at epochs 1 and 2
    good, active, bad = (Trial("fn", stub=True) for _ in range(3))

    def report(trial, epoch, loss, au):
        return scheduler.on_trial_result(None, trial, {"epoch": epoch, "val/neg_elbo": loss, "val/au": au})

    assert report(good, 1, 38.0, 0) == TrialScheduler.CONTINUE  # alone at the rung
    assert report(active, 1, 39.5, 9) == TrialScheduler.CONTINUE  # best on AU
    assert report(bad, 1, 40.0, 0) == TrialScheduler.STOP
    assert report(good, 2, 37.0, 0) == TrialScheduler.CONTINUE
    assert report(good, 3, 36.0, 0) == TrialScheduler.CONTINUE  # past the last rung: no decision
    assert report(active, 2, 39.0, 9) == TrialScheduler.CONTINUE  # best on AU at rung 2 too
    assert set(scheduler.rungs[2]) == {good.trial_id, active.trial_id}
    # A trial's final result (with trial_status) is never judged.
    assert scheduler.on_trial_result(None, bad, {"epoch": 1, "trial_status": "completed"}) == TrialScheduler.CONTINUE


def _epochs(config):
    """A trial whose validation loss is its `loss` every epoch, checkpointed as a sweep's is."""
    start = 0
    if tune.get_checkpoint():
        with tune.get_checkpoint().as_directory() as path:
            start = int((Path(path) / "epoch").read_text())
    for epoch in range(start + 1, 4):
        with tempfile.TemporaryDirectory() as path:
            (Path(path) / "epoch").write_text(str(epoch))
            tune.report({"epoch": epoch, "val/neg_elbo": config["loss"]}, checkpoint=tune.Checkpoint.from_directory(path))


class _InterruptAfter(tune.Callback):
    """Ctrl-C, as the driver turns SIGTERM into, once `count` trials have ended."""

    def __init__(self, count: int):
        self.count, self.ended = count, 0

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.ended += 1
        if self.ended == self.count:
            signal.raise_signal(signal.SIGINT)


def _last_epochs(tmp_path, interrupt_after: int | None) -> dict[float, int]:
    """Loss -> last epoch trained, for trials that reach rung 1 in a fixed order."""
    scheduler = ObjectiveHalving({"val/neg_elbo": "min"}, grace=1, eta=3, max_t=2)  # one rung, at epoch 1
    callbacks = [scheduler.keeper] + ([_InterruptAfter(interrupt_after)] if interrupt_after else [])
    name = f"halving-{interrupt_after}"
    tuner = tune.Tuner(_epochs, param_space={"loss": tune.grid_search([1.0, 2.0, 3.0, 4.0, 0.5])},
                       tune_config=tune.TuneConfig(scheduler=scheduler, max_concurrent_trials=1),
                       run_config=tune.RunConfig(name=name, storage_path=str(tmp_path), verbose=0, callbacks=callbacks))
    grid = tuner.fit()
    if interrupt_after:
        assert sum(r.metrics.get("epoch") == 3 for r in grid) < 5  # stopped with trials left
        grid = tune.Tuner.restore(str(tmp_path / name), _epochs, resume_unfinished=True).fit()
    return {r.config["loss"]: r.metrics["epoch"] for r in grid}


@pytest.mark.e2e
def test_a_resumed_sweep_prunes_as_an_uninterrupted_one(tmp_path, local_ray):
    straight = _last_epochs(tmp_path, None)
    # 1.0 goes on alone; 2.0, 3.0 and 4.0 are behind it (one kept per three); 0.5 leads.
    assert straight == {1.0: 3, 2.0: 1, 3.0: 1, 4.0: 1, 0.5: 3}
    # Stopped after 2.0 and 3.0 were pruned: with empty rungs 4.0 would have gone on alone.
    assert _last_epochs(tmp_path, interrupt_after=3) == straight
