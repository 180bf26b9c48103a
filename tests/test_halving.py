"""Successive halving on every objective: a trial that keeps its latent (high AU, slightly
worse loss) survives a rung that ASHA on the loss alone would stop it at."""
import os
import signal
import threading
import time

import pytest
from mlflow import MlflowClient
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from sweeps import cli, engine, tracking
from sweeps.engine.halving import ObjectiveHalving, milestones, promising, rung_metrics
from sweeps.space import Objective
from tests.helpers import LR, epochs_logged, sweep_runs, write_space

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


def _interrupt_when(uri: str, name: str, ready, done: threading.Event) -> None:
    """Ctrl-C to this process (SIGINT, which Tune's fit handles: stop, save, return) once
    READY(trial runs) holds for sweep NAME, read from its tracking server; unless DONE first."""
    client = MlflowClient(uri)

    def watch():
        while not done.is_set():
            experiment = client.get_experiment_by_name(name)
            runs = [r for r in client.search_runs([experiment.experiment_id]) if tracking.PARENT_TAG in r.data.tags] \
                if experiment else []
            if ready(runs):
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.1)

    threading.Thread(target=watch, daemon=True).start()


def _outcomes(client: MlflowClient, name: str) -> dict[float, tuple[str, list[int]]]:
    """Sweep NAME's trials by learning rate: outcome and epochs logged."""
    return {float(r.data.params["train.lr"]): (r.data.tags.get("trial_status"), epochs_logged(client, r))
            for r in sweep_runs(client, name)[1]}


@pytest.mark.e2e
def test_a_resumed_sweep_prunes_as_an_uninterrupted_one(tmp_path, monkeypatch, mlflow_server, local_ray):
    """`sweeps run`, Ctrl-C between two trials, `sweeps resume`: the trial after the interrupt is
    judged at its rung against those before it, as in a sweep never interrupted (Tune does not
    save a scheduler's rungs; the RungKeeper engine.fit adds to the run's callbacks does)."""
    monkeypatch.chdir(tmp_path)
    # One trial at a time, seeded: TPE's first trials are drawn at random, the same in both
    # sweeps. One rung, at epoch 1 of 3 (η = 3); 4000 sentences make an epoch last seconds.
    space = write_space(tmp_path / "rungs.yaml", LR, trials=4, epochs=3, max_concurrent=1,
                        objectives=[{"metric": "test/nll", "mode": "min"}], fixed={"data.synthetic_sentences": 4000})
    client = MlflowClient(mlflow_server)
    run = ["run", space, "--seed", "4", "--tracking-uri", mlflow_server]
    assert cli.main([*run, "--name", "straight"]) == 0
    straight = _outcomes(client, "straight")
    order = [t.params["train.lr"] for t in engine.load_study(str(tmp_path / "sweep_results" / "straight")).trials]
    # The third trial is stopped at the rung among three: alone at an empty rung it would go on.
    assert straight[order[2]] == ("pruned", [1]), (order, straight)

    def third_started(runs) -> bool:
        """Two trials ended; the third has its run and params but has logged no epoch yet."""
        running = [r for r in runs if r.info.status == "RUNNING"]
        return (len(runs) == 3 and len(running) == 1 and running[0].data.tags.get("trial_status") == "running"
                and "train.lr" in running[0].data.params and "val/neg_elbo" not in running[0].data.metrics)

    done = threading.Event()
    _interrupt_when(mlflow_server, "resumed", third_started, done)
    try:
        assert cli.main([*run, "--name", "resumed"]) == 130
    finally:
        done.set()
    # Exactly the third was interrupted, before Tune judged it at its rung: it may have logged its
    # first epoch, but Tune, which holds its report until it has judged it, had not yet.
    interrupted = _outcomes(client, "resumed")
    outcome, logged = interrupted.pop(order[2])
    assert interrupted == {lr: straight[lr] for lr in order[:2]} and outcome == "running" and logged in ([], [1])

    assert cli.main(["resume", "resumed"]) == 0
    assert _outcomes(client, "resumed") == straight
