"""End-to-end sweeps: real Ray Tune, real Optuna, a real MLflow tracking server, tiny models;
and the live table's units. Faults injected into a running sweep: test_faults.py, test_outages.py."""
import io
import json
import shutil
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow import MlflowClient

import models
from models.resolve import parse_config
from sweeps import cli, engine, tracking
from sweeps.engine import progress
from sweeps.engine.progress import Progress, TrialRow, pareto_front
from sweeps.space import Objective, load_space
from tests.helpers import LR, artifacts, epochs_logged, sweep_runs, write_space


@pytest.mark.e2e
def test_sweep_logs_parent_run_and_one_child_run_per_trial(tmp_path, monkeypatch, capsys, mlflow_server, local_ray):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "0")  # Tune's result.json: every result it got
    space = write_space(tmp_path / "tiny.yaml", LR, trials=4, epochs=3, max_concurrent=2)
    assert cli.main(["run", space, "--name", "e2e", "--tracking-uri", mlflow_server, "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "Sweep e2e: 4 trials" in out and "Best test/nll (min)" in out and "Pareto front" in out

    client = MlflowClient(mlflow_server)
    parent, children = sweep_runs(client, "e2e")
    assert parent.info.status == "FINISHED"
    assert parent.data.params["search.train.lr"] == "float[0.05, 1.0] log"
    assert parent.data.params["sweep.trials"] == "4" and "mlflow.note.content" in parent.data.tags
    assert {"summary.txt", "trials.csv", "search_space"} <= artifacts(client, parent)
    assert artifacts(client, parent, "search_space") == {"search_space/tiny.yaml"}

    assert len(children) == 4
    assert len({r.data.tags[tracking.TRIAL_TAG] for r in children}) == 4
    outcomes = set()
    for run in children:
        assert run.data.tags[tracking.PARENT_TAG] == parent.info.run_id
        assert run.data.params["model.latent_dim"] == "2" and run.data.params["threads"] == "1"
        assert 0.05 <= float(run.data.params["train.lr"]) <= 1.0
        assert {"config.yaml", "curves.png"} <= artifacts(client, run)
        config = yaml.safe_load(Path(client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path))).read_text())
        assert parse_config(config).train.lr == float(run.data.params["train.lr"])  # re-runnable by train --config
        steps = epochs_logged(client, run)
        assert steps == list(range(1, len(steps) + 1))  # one point per epoch, step = epoch
        outcome = run.data.tags["trial_status"]
        outcomes.add(outcome)
        (trial_dir,) = (tmp_path / "sweep_results" / "e2e").glob(f"run_trial_{run.data.tags[tracking.TRIAL_TAG]}_*")
        results = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
        testing = [r for r in results if "test_progress" in r]
        if outcome == "completed":
            assert run.info.status == "FINISHED" and steps == [1, 2, 3]
            assert {"test/nll", "test/au", "test/kl", "wall_time", "test_time", "train/loss"} <= set(run.data.metrics)
            # The test's progress reached the driver: tenths up to the end, at the last epoch.
            assert testing and testing[-1]["test_progress"] == 1.0 and {r["epoch"] for r in testing} == {3}
            assert results[-1]["trial_status"] == "completed" and "test_progress" not in results[-1]
        else:
            assert (outcome, run.info.status) == ("pruned", "KILLED") and len(steps) < 3
            assert "test/nll" not in run.data.metrics and not testing
    assert "completed" in outcomes  # the first trial at a rung is never stopped


@pytest.mark.e2e
def test_trials_stopped_by_halving_reach_optuna_as_pruned(tmp_path, mlflow_server, local_ray):
    space = load_space(write_space(tmp_path / "asha.yaml",
                                   {"train.lr": {"type": "float", "low": 0.001, "high": 1.0, "log": True}},
                                   epochs=4))
    experiment_id, parent = tracking.start_sweep_run(mlflow_server, "asha", {}, {}, space.path)
    ctx = engine.TrialContext(space, {"threads": 1}, mlflow_server, experiment_id, parent)
    # One trial at a time with a seeded sampler: halving's decisions are reproducible.
    def fit():
        return engine.SweepFit(ctx, "asha", str(tmp_path / "results"), trials=6, max_concurrent=1, cpus=1, gpus=0,
                               epochs=4, seed=0, asha=engine.Asha(grace_period=1, reduction_factor=2))

    rows = fit().run()
    study = engine.load_study(str(tmp_path / "results" / "asha"))
    by_lr = {t.params["train.lr"]: t for t in study.trials}
    assert len(by_lr) == len(rows) == 6
    assert {r.outcome for r in rows} == {"completed", "pruned"}
    for row in rows:
        told = by_lr[row.params["train.lr"]]
        if row.outcome == "pruned":
            assert told.state == optuna.trial.TrialState.PRUNED and told.values is None and row.epoch < 4
        else:
            assert told.state == optuna.trial.TrialState.COMPLETE and row.epoch == 4
            assert told.values == [row.metrics["test/nll"], row.metrics["test/au"]]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.best_trials)
    # Resumed with nothing left to run, its pruned trials are still pruned, not trials to resume.
    assert {(r.trial_id, r.outcome) for r in fit().run(restore=True)} == {(r.trial_id, r.outcome) for r in rows}


@pytest.mark.e2e
def test_diverging_trials_fail_with_reason_and_val_objectives_reach_optuna_with_the_last_validation(
        tmp_path, monkeypatch, capsys, mlflow_server, local_ray):
    """One sweep for the failures a trial meets while the sweep goes on, beside trials trained to
    the end: a grid (no halving), so every completed trial reaches Optuna as COMPLETE."""
    monkeypatch.chdir(tmp_path)
    space = write_space(tmp_path / "fails.yaml", {"train.lr": {"type": "categorical", "choices": [0.5, 1.0, 1.0e+30]}},
                        sampler="grid", trials=3, epochs=2, max_concurrent=2,
                        objectives=[{"metric": "test/nll", "mode": "min"}, {"metric": "val/neg_elbo", "mode": "min"}])
    assert cli.main(["run", space, "--name", "fails", "--seed", "0", "--tracking-uri", mlflow_server]) == 0
    out = capsys.readouterr().out
    assert "Best val/neg_elbo (min)" in out and "Pareto front" in out
    summary = out.split("Sweep fails:")[1]
    client = MlflowClient(mlflow_server)
    parent, children = sweep_runs(client, "fails")
    assert parent.info.status == "FINISHED" and len(children) == 3
    arithmetic = models.arithmetic({})  # the trials' config leaves model.kernels and device at auto
    assert all(r.data.params["arithmetic"] == r.data.tags["arithmetic.attempts"] == arithmetic for r in children)
    expected, diverged = {}, []
    for run in children:
        trial = run.data.tags[tracking.TRIAL_TAG]
        assert "," not in run.data.tags["node.attempts"]  # one attempt: a retry would fail the same way
        if float(run.data.params["train.lr"]) > 1:
            diverged.append(trial)
            assert (run.info.status, run.data.tags["trial_status"]) == ("FAILED", "failed")
            assert run.data.tags["failure_reason"].startswith("diverged: training loss became")
            assert "failure.txt" in artifacts(client, run) and "test/nll" not in run.data.metrics
            assert trial not in summary  # never ranked
            continue
        assert (run.info.status, run.data.tags["trial_status"]) == ("FINISHED", "completed")
        history = sorted(client.get_metric_history(run.info.run_id, "val/neg_elbo"), key=lambda m: m.step)
        assert [m.step for m in history] == [1, 2]
        expected[trial] = [run.data.metrics["test/nll"], history[-1].value]  # the last validation
    assert len(diverged) == 1 and len(expected) == 2
    assert any(trial in summary for trial in expected)
    results = str(tmp_path / "sweep_results" / "fails")
    searcher = {t.params["train.lr"]: t for t in engine.load_study(results).trials}
    assert searcher[1.0e+30].state == optuna.trial.TrialState.FAIL
    assert sorted(searcher[lr].values for lr in (0.5, 1.0)) == sorted(expected.values())
    assert all(searcher[lr].state == optuna.trial.TrialState.COMPLETE for lr in (0.5, 1.0))
    mirror = {t.user_attrs["tune_trial_id"]: t for t in optuna.load_study(study_name="fails",
                                                                            storage=engine.storage_url(results)).trials}
    assert {trial: t.values for trial, t in mirror.items() if trial in expected} == expected  # as the searcher was told
    assert sorted(t.state for t in mirror.values()) == sorted(t.state for t in searcher.values())


@pytest.mark.e2e
def test_trials_failing_on_their_data_or_non_finite_test_metrics_fail_at_once_and_the_sweep_exits_1(
        tmp_path, monkeypatch, capsys, mlflow_server, local_ray):
    """One sweep for the failures that end a trial without a retry, all of its trials failing."""
    monkeypatch.chdir(tmp_path)
    # On the synthetic corpus, one update per epoch (a batch holds the whole training split): at lr
    # 1e30 that update's loss is finite, so training does not diverge, but the model it leaves
    # evaluates to NaN. The other corpus does not exist.
    space = write_space(tmp_path / "broken.yaml", {"data.name": {"type": "categorical",
                                                               "choices": ["synthetic", "missing/a"]}},
                        sampler="grid", trials=2, epochs=1, max_concurrent=2,
                        fixed={"train.lr": 1.0e+30, "data.batch_size": 400})
    assert cli.main(["run", space, "--name", "broken", "--seed", "0", "--tracking-uri", mlflow_server]) == 1
    summary = capsys.readouterr().out.split("Sweep broken:")[1]
    assert "Best " not in summary  # nothing ranks: a NaN would come first or never be dominated
    client = MlflowClient(mlflow_server)
    parent, children = sweep_runs(client, "broken")
    assert parent.info.status == "FAILED" and len(children) == 2
    runs = {r.data.params["data.name"]: r for r in children}
    for run in runs.values():
        assert (run.info.status, run.data.tags["trial_status"]) == ("FAILED", "failed")
        assert "," not in run.data.tags["node.attempts"]  # one attempt: a retry would fail the same way
        assert "test/nll" not in run.data.metrics and run.data.tags[tracking.TRIAL_TAG] not in summary
    reason = runs["synthetic"].data.tags["failure_reason"]
    assert reason.startswith("diverged: the trained model's test metrics are not finite: ") and "test/nll=nan" in reason
    assert runs["missing/a"].data.tags["failure_reason"] == "data rejected by models: missing/a.train.txt: file not found"
    results = str(tmp_path / "sweep_results" / "broken")
    assert [t.state for t in engine.load_study(results).trials] == [optuna.trial.TrialState.FAIL] * 2
    mirror = optuna.load_study(study_name="broken", storage=engine.storage_url(results))
    assert {t.params["data.name"]: t.state for t in mirror.trials} == {
        "synthetic": optuna.trial.TrialState.FAIL, "missing/a": optuna.trial.TrialState.FAIL}


@pytest.mark.e2e
def test_a_settled_trial_reports_its_test_metrics_and_last_validation_again(tmp_path, mlflow_server):
    """What a trial reports when it finds its run already completed (a driver killed as it ended)."""
    experiment_id, parent = tracking.start_sweep_run(mlflow_server, "settled", {}, {},
                                                     write_space(tmp_path / "settled.yaml", LR))
    run = tracking.TrialRun.find_or_create(mlflow_server, experiment_id, parent, "t0")
    run.start()
    # The last validation, not the best.
    run.log_epochs({1: {"val/neg_elbo": 5.0, "val/au": 1.0}, 2: {"val/neg_elbo": 6.0, "val/au": 2.0}})
    run.log_final(2, {"test/nll": 3.0, "wall_time": 1.0}, "collapsed: AU 0/2, KL 0.01, MI 0.00")
    assert tracking.TrialRun(mlflow_server, run.run_id).final_metrics == {}  # not ended yet
    run.finish("completed")
    again = tracking.TrialRun.find_or_create(mlflow_server, experiment_id, parent, "t0")
    assert again.settled and again.final_metrics == {"test/nll": 3.0, "val/neg_elbo": 6.0, "val/au": 2.0}


@pytest.mark.e2e
def test_resume_if_exists_starts_again_a_sweep_stopped_before_tune_saved_a_trial(tmp_path, monkeypatch, capsys,
                                                                                 mlflow_server, local_ray):
    monkeypatch.chdir(tmp_path)
    space = write_space(tmp_path / "early.yaml", LR, trials=2, epochs=1, max_concurrent=2)
    run = ["run", space, "--name", "early", "--tracking-uri", mlflow_server, "--resume-if-exists"]
    assert cli.main(run) == 0
    client = MlflowClient(mlflow_server)
    first, first_trials = sweep_runs(client, "early")
    # As a job stopped while it started leaves it: sweep.json and a running parent run, no Tune state.
    for path in (tmp_path / "sweep_results" / "early").iterdir():
        if path.name not in ("sweep.json", "space.yaml", "driver.lock"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    tracking.reopen_run(mlflow_server, first.info.run_id)
    assert not engine.can_resume(str(tmp_path / "sweep_results" / "early"))
    capsys.readouterr()

    assert cli.main(run) == 0  # before: "interrupted before its first trial was saved", exit 2, for ever
    assert "was stopped before Tune saved a trial: starting it again" in capsys.readouterr().out
    old = client.get_run(first.info.run_id)
    store = tracking.Store(mlflow_server)
    sweep = store.sweep("early")
    assert sweep.run_id != first.info.run_id
    assert old.info.status == "FAILED" and old.data.tags["superseded_by"] == sweep.run_id
    assert all(client.get_run(r.info.run_id).info.lifecycle_stage == "deleted" for r in first_trials)
    assert client.get_run(sweep.run_id).info.status == "FINISHED" and len(store.trials(sweep)) == 2


def test_pareto_front_keeps_only_undominated_completed_trials():
    objectives = (Objective("test/nll", "min"), Objective("test/au", "max"))
    rows = [TrialRow("a", "completed", metrics={"test/nll": 50.0, "test/au": 1.0}),
            TrialRow("b", "completed", metrics={"test/nll": 52.0, "test/au": 3.0}),
            TrialRow("c", "completed", metrics={"test/nll": 53.0, "test/au": 2.0}),  # dominated by b
            TrialRow("d", "completed", metrics={"test/nll": 50.0, "test/au": 1.0}),  # ties a: kept
            TrialRow("e", "pruned", metrics={"test/nll": 10.0, "test/au": 9.0})]    # truncated: ignored
    assert [r.trial_id for r in pareto_front(rows, objectives)] == ["a", "d", "b"]


def test_a_trial_in_its_test_shows_as_testing_and_the_eta_counts_the_tests(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    out = io.StringIO()
    live = Progress(total=2, epochs=2, objectives=(Objective("test/nll", "min"),), out=out)
    live.update([])
    clock[0] += 100.0
    # Trial a trained its 2 epochs of 10 s and scored a quarter of its test in 30 s: a test takes
    # 12 epochs' time. Done: a's 2 epochs and 3 of its test, b's 1 epoch: 6 of 2 × 14 units.
    last_epoch = {"epoch_time": 10.0, "val/neg_elbo": 40.0}
    rows = [TrialRow("a", "running", 2, {**last_epoch, "test_time": 30.0}, testing=0.25),
            TrialRow("b", "running", 1, last_epoch)]
    assert live.eta(rows) == pytest.approx(100.0 * (28 - 6) / 6)
    live.update(rows)  # a began its test: the table again
    table = out.getvalue().splitlines()[-3:]
    assert "testing a 25%" in table[0] and "ETA 06:06" in table[0]
    assert table[1].split()[:3] == ["a", "running", "epoch"] and "testing 25%" in table[1]
    assert "testing" not in table[2]
    # Once a's test ended, its measured length still counts for b's; a's final result counts it
    # as done while Tune still has it running.
    final = {"test/nll": 39.0, "trial_status": "completed"}
    for outcome in ("running", "completed"):
        rows = [TrialRow("a", outcome, 2, final), TrialRow("b", "running", 2, last_epoch)]
        assert live.eta(rows) == pytest.approx(100.0 * (28 - 16) / 16)
