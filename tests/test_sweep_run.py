"""End-to-end sweeps: real Ray Tune, real Optuna, a real MLflow tracking server, tiny models."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import yaml
from mlflow import MlflowClient

from models.config import parse_config
from sweeps import cli, engine, tracking
from sweeps.engine.progress import TrialRow, pareto_front
from sweeps.space import Objective, load_space

REPO = Path(__file__).resolve().parents[1]
TINY = {"data.synthetic_sentences": 400, "model.enc_emb_dim": 8, "model.enc_hidden": 8,
        "model.dec_emb_dim": 8, "model.dec_hidden": 8, "model.latent_dim": 2,
        "eval.iw_samples": 5, "eval.iw_batch": 5}
LR = {"train.lr": {"type": "float", "low": 0.05, "high": 1.0, "log": True}}


def write_space(path: Path, params: dict, **top) -> str:
    fixed = {**TINY, "data.cache_dir": str(path.parent / "cache"), **top.pop("fixed", {})}
    path.write_text(yaml.safe_dump({"method": "vae", "fixed": fixed, "params": params, **top}))
    return str(path)


def sweep_runs(client: MlflowClient, name: str):
    """(parent run, child runs) of sweep `name`."""
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if tracking.PARENT_TAG not in r.data.tags]
    assert len(parents) == 1
    return parents[0], [r for r in runs if tracking.PARENT_TAG in r.data.tags]


def epochs_logged(client: MlflowClient, run) -> list[int]:
    return [m.step for m in sorted(client.get_metric_history(run.info.run_id, "val/neg_elbo"), key=lambda m: m.step)]


def artifacts(client: MlflowClient, run, path=None) -> set[str]:
    return {a.path for a in client.list_artifacts(run.info.run_id, path)}


def test_sweep_logs_parent_run_and_one_child_run_per_trial(tmp_path, monkeypatch, capsys, mlflow_server, local_ray):
    monkeypatch.chdir(tmp_path)
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
        if outcome == "completed":
            assert run.info.status == "FINISHED" and steps == [1, 2, 3]
            assert {"test/nll", "test/au", "test/kl", "wall_time", "train/loss"} <= set(run.data.metrics)
        else:
            assert (outcome, run.info.status) == ("pruned", "KILLED") and len(steps) < 3
            assert "test/nll" not in run.data.metrics
    assert "completed" in outcomes  # the first trial at a rung is never stopped


def test_trials_stopped_by_asha_reach_optuna_as_pruned(tmp_path, mlflow_server, local_ray):
    space = load_space(write_space(tmp_path / "asha.yaml",
                                   {"train.lr": {"type": "float", "low": 0.001, "high": 1.0, "log": True}},
                                   epochs=4))
    experiment_id, parent = tracking.start_sweep_run(mlflow_server, "asha", {}, {}, space.path)
    ctx = engine.TrialContext(space, {"threads": 1}, mlflow_server, experiment_id, parent)
    # One trial at a time with a seeded sampler: ASHA's decisions are reproducible.
    rows = engine.fit(ctx, "asha", str(tmp_path / "results"), trials=6, max_concurrent=1, cpus=1, gpus=0,
                      epochs=4, seed=0, asha=engine.Asha(grace_period=1, reduction_factor=2))
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


def test_diverging_trial_is_failed_with_reason_and_sweep_goes_on(tmp_path, monkeypatch, mlflow_server, local_ray):
    monkeypatch.chdir(tmp_path)
    space = write_space(tmp_path / "div.yaml", {"train.lr": {"type": "categorical", "choices": [0.5, 1.0e+30]}},
                        trials=4, max_concurrent=2)
    assert cli.main(["run", space, "--name", "div", "--epochs", "1", "--seed", "0",
                     "--tracking-uri", mlflow_server]) == 0
    client = MlflowClient(mlflow_server)
    parent, children = sweep_runs(client, "div")
    assert parent.info.status == "FINISHED" and len(children) == 4
    diverged = [r for r in children if float(r.data.params["train.lr"]) > 1]
    assert diverged and len(diverged) < 4  # the seed samples both choices
    for run in children:
        if run in diverged:
            assert (run.info.status, run.data.tags["trial_status"]) == ("FAILED", "failed")
            assert run.data.tags["failure_reason"].startswith("diverged: training loss became")
            assert "failure.txt" in artifacts(client, run)
        else:
            assert (run.info.status, run.data.tags["trial_status"]) == ("FINISHED", "completed")
            assert "test/nll" in run.data.metrics
    states = [t.state for t in engine.load_study(str(tmp_path / "sweep_results" / "div")).trials]
    assert states.count(optuna.trial.TrialState.FAIL) == len(diverged)
    mirror = optuna.load_study(study_name="div", storage=engine.storage_url(str(tmp_path / "sweep_results" / "div")))
    assert sorted(t.state for t in mirror.trials) == sorted(states)  # as the searcher was told


def test_data_error_in_a_trial_fails_it_at_once_and_an_all_failed_sweep_exits_1(tmp_path, monkeypatch,
                                                                               mlflow_server, local_ray):
    monkeypatch.chdir(tmp_path)
    space = write_space(tmp_path / "data.yaml", {"data.name": {"type": "categorical",
                                                              "choices": ["missing/a", "missing/b"]}},
                        sampler="grid", trials=2, max_concurrent=2)
    assert cli.main(["run", space, "--name", "data", "--epochs", "1", "--tracking-uri", mlflow_server]) == 1
    client = MlflowClient(mlflow_server)
    parent, children = sweep_runs(client, "data")
    assert parent.info.status == "FAILED" and len(children) == 2
    for run in children:
        assert (run.info.status, run.data.tags["trial_status"]) == ("FAILED", "failed")
        assert run.data.tags["failure_reason"] == (f"data rejected by models: {run.data.params['data.name']}"
                                                   ".train.txt: file not found")
        assert "," not in run.data.tags["node.attempts"]  # one attempt: a retry would fail the same way
    states = [t.state for t in engine.load_study(str(tmp_path / "sweep_results" / "data")).trials]
    assert states == [optuna.trial.TrialState.FAIL] * 2


def test_a_settled_trial_reports_its_test_metrics_and_last_validation_again(tmp_path, mlflow_server):
    """What a trial reports when it finds its run already completed (a driver killed as it ended)."""
    experiment_id, parent = tracking.start_sweep_run(mlflow_server, "settled", {}, {},
                                                     write_space(tmp_path / "settled.yaml", LR))
    run = tracking.TrialRun.find_or_create(mlflow_server, experiment_id, parent, "t0")
    run.start()
    for epoch, loss in ((1, 5.0), (2, 6.0)):  # the last validation, not the best
        run.log_epoch(epoch, {"val/neg_elbo": loss, "val/au": float(epoch)})
    run.log_final(2, {"test/nll": 3.0, "wall_time": 1.0})
    assert tracking.TrialRun(mlflow_server, run.run_id).final_metrics == {}  # not ended yet
    run.finish("completed")
    again = tracking.TrialRun.find_or_create(mlflow_server, experiment_id, parent, "t0")
    assert again.settled and again.final_metrics == {"test/nll": 3.0, "val/neg_elbo": 6.0, "val/au": 2.0}


def test_val_objectives_reach_optuna_with_the_last_validation(tmp_path, monkeypatch, capsys, mlflow_server,
                                                               local_ray):
    monkeypatch.chdir(tmp_path)
    # A grid: no ASHA, so every trial trains to the end and must reach Optuna as COMPLETE.
    space = write_space(tmp_path / "val.yaml", {"train.lr": {"type": "categorical", "choices": [0.5, 1.0]}},
                        sampler="grid", trials=2, epochs=2, max_concurrent=2,
                        objectives=[{"metric": "test/nll", "mode": "min"}, {"metric": "val/neg_elbo", "mode": "min"}])
    assert cli.main(["run", space, "--name", "val", "--seed", "0", "--tracking-uri", mlflow_server]) == 0
    out = capsys.readouterr().out
    assert "Best val/neg_elbo (min)" in out and "Pareto front" in out
    client = MlflowClient(mlflow_server)
    expected = {}
    for run in sweep_runs(client, "val")[1]:
        history = sorted(client.get_metric_history(run.info.run_id, "val/neg_elbo"), key=lambda m: m.step)
        assert [m.step for m in history] == [1, 2]
        expected[run.data.tags[tracking.TRIAL_TAG]] = [run.data.metrics["test/nll"], history[-1].value]
    searcher = engine.load_study(str(tmp_path / "sweep_results" / "val"))
    assert [t.state for t in searcher.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert sorted(t.values for t in searcher.trials) == sorted(expected.values())
    mirror = optuna.load_study(study_name="val", storage=engine.storage_url(str(tmp_path / "sweep_results" / "val")))
    assert {t.user_attrs["tune_trial_id"]: t.values for t in mirror.trials} == expected


def test_non_finite_test_metrics_fail_the_trial_and_never_rank(tmp_path, monkeypatch, capsys, mlflow_server,
                                                                local_ray):
    monkeypatch.chdir(tmp_path)
    # One update per epoch (a batch holds the whole training split): at lr 1e30 that update's loss is
    # finite, so training does not diverge, but the model it leaves evaluates to NaN.
    space = write_space(tmp_path / "nan.yaml", {"train.lr": {"type": "categorical", "choices": [0.5, 1.0e+30]}},
                        sampler="grid", trials=2, epochs=1, max_concurrent=2, fixed={"data.batch_size": 400})
    assert cli.main(["run", space, "--name", "nan", "--seed", "0", "--tracking-uri", mlflow_server]) == 0
    summary = capsys.readouterr().out.split("Sweep nan:")[1]
    client = MlflowClient(mlflow_server)
    runs = {float(r.data.params["train.lr"]): r for r in sweep_runs(client, "nan")[1]}
    bad, good = runs[1.0e+30], runs[0.5]
    assert (bad.info.status, bad.data.tags["trial_status"]) == ("FAILED", "failed")
    assert "test/nll=nan" in bad.data.tags["failure_reason"] and "test/nll" not in bad.data.metrics
    assert good.data.tags["trial_status"] == "completed"
    assert bad.data.tags[tracking.TRIAL_TAG] not in summary and good.data.tags[tracking.TRIAL_TAG] in summary
    mirror = optuna.load_study(study_name="nan", storage=engine.storage_url(str(tmp_path / "sweep_results" / "nan")))
    assert {t.params["train.lr"]: t.state for t in mirror.trials} == {
        0.5: optuna.trial.TrialState.COMPLETE, 1.0e+30: optuna.trial.TrialState.FAIL}
    searcher = engine.load_study(str(tmp_path / "sweep_results" / "nan"))
    assert {t.params["train.lr"]: t.state for t in searcher.trials} == {
        t.params["train.lr"]: t.state for t in mirror.trials}


def _wait_for_finished_trials(proc: subprocess.Popen, count: int, timeout: float) -> str:
    """Read the sweep's progress until `count` trials have ended; return the output so far."""
    seen, deadline = "", time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, f"sweep exited early:\n{seen}"
        seen += line
        counts = re.search(r"(\d+) completed, (\d+) pruned, (\d+) failed", line)
        if counts and sum(map(int, counts.groups())) >= count and " 0 running" not in line:
            return seen
    raise AssertionError(f"no {count} finished trials in {timeout}s:\n{seen}")


def _server_processes(db: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(db).encode() in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def test_killed_sweep_resumes_without_rerunning_or_duplicating_trials(tmp_path, monkeypatch, local_ray):
    space = write_space(tmp_path / "kill.yaml", LR, trials=6, epochs=3, max_concurrent=2)
    # The embedded default: no --tracking-uri, so the sweep runs its own server over ./mlflow.db.
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "sweeps", "run", space, "--name", "k", "--seed", "2"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        _wait_for_finished_trials(proc, 2, timeout=240)
        proc.send_signal(signal.SIGKILL)  # the driver only: Ray and the MLflow server must notice
        proc.wait()
        deadline = time.monotonic() + 30
        while _server_processes(tmp_path / "mlflow.db") and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _server_processes(tmp_path / "mlflow.db"), "the MLflow server outlived its driver"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # Ray agents the killed driver leaves behind
    # With every writer gone the store can be read directly.
    store = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    _, before = sweep_runs(store, "k")
    ended = {r.data.tags[tracking.TRIAL_TAG]: r.info.end_time for r in before if r.info.status != "RUNNING"}
    assert ended and any(r.info.status == "RUNNING" for r in before)

    monkeypatch.chdir(tmp_path)
    assert cli.main(["resume", "k"]) == 0
    parent, after = sweep_runs(store, "k")
    assert parent.info.status == "FINISHED"
    trial_ids = [r.data.tags[tracking.TRIAL_TAG] for r in after]
    assert len(trial_ids) == len(set(trial_ids)) == 6
    for run in after:
        assert run.info.status in ("FINISHED", "KILLED")
        steps = epochs_logged(store, run)
        assert steps == list(range(1, len(steps) + 1))  # no epoch lost, none logged twice
        if run.data.tags[tracking.TRIAL_TAG] in ended:  # finished before the kill: not rerun
            assert run.info.end_time == ended[run.data.tags[tracking.TRIAL_TAG]]
    study = engine.load_study(str(tmp_path / "sweep_results" / "k"))
    assert len(study.trials) >= 6
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    # The Optuna storage holds every trial once, however often its end was reported.
    mirror = optuna.load_study(study_name="k", storage=engine.storage_url(str(tmp_path / "sweep_results" / "k")))
    mirrored = [t.user_attrs["tune_trial_id"] for t in mirror.trials]
    assert len(mirrored) == len(set(mirrored)) and set(trial_ids) <= set(mirrored)


def test_pareto_front_keeps_only_undominated_completed_trials():
    objectives = (Objective("test/nll", "min"), Objective("test/au", "max"))
    rows = [TrialRow("a", "completed", metrics={"test/nll": 50.0, "test/au": 1.0}),
            TrialRow("b", "completed", metrics={"test/nll": 52.0, "test/au": 3.0}),
            TrialRow("c", "completed", metrics={"test/nll": 53.0, "test/au": 2.0}),  # dominated by b
            TrialRow("d", "completed", metrics={"test/nll": 50.0, "test/au": 1.0}),  # ties a: kept
            TrialRow("e", "pruned", metrics={"test/nll": 10.0, "test/au": 9.0})]    # truncated: ignored
    assert [r.trial_id for r in pareto_front(rows, objectives)] == ["a", "d", "b"]
