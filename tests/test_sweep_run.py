"""End-to-end sweeps: real Ray Tune, real Optuna, a real MLflow tracking server, tiny models."""
import contextlib
import io
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow import MlflowClient

from models.config import parse_config
from sweeps import cli, engine, tracking
from sweeps.engine import progress
from sweeps.engine.progress import Progress, TrialRow, pareto_front
from sweeps.space import Objective, load_space
from tests.helpers import LR, REPO, artifacts, epochs_logged, session_pids, sweep_runs, write_space


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
    assert reason.startswith("diverged: final metrics not finite: ") and "test/nll=nan" in reason
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
    run.log_final(2, {"test/nll": 3.0, "wall_time": 1.0})
    assert tracking.TrialRun(mlflow_server, run.run_id).final_metrics == {}  # not ended yet
    run.finish("completed")
    again = tracking.TrialRun.find_or_create(mlflow_server, experiment_id, parent, "t0")
    assert again.settled and again.final_metrics == {"test/nll": 3.0, "val/neg_elbo": 6.0, "val/au": 2.0}


def _wait_for_completed_trials(proc: subprocess.Popen, count: int, timeout: float) -> None:
    """Read the sweep's progress until `count` trials have been trained to the end with trials
    still running."""
    seen, deadline = "", time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, f"sweep exited early:\n{seen}"
        seen += line
        counts = re.search(r"(\d+) running, \d+ pending, (\d+) completed, \d+ pruned, \d+ failed", line)
        if counts:
            running, done = map(int, counts.groups())
            if running and done >= count:
                return
    raise AssertionError(f"no {count} completed trials in {timeout}s:\n{seen}")


def _wait_for_interrupted_store(proc: subprocess.Popen, db: Path, ended: int, epochs: int, timeout: float) -> None:
    """Poll the store (read-only, beside its server) until `ended` trial runs have ended while
    another is running with some but not all of its `epochs` logged: Tune's "running" count
    includes trials whose process has not created its run yet, so the progress line cannot say so."""
    query = """SELECT r.status, (SELECT COUNT(*) FROM metrics m WHERE m.run_uuid = r.run_uuid
                                 AND m.key = 'val/neg_elbo')
               FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = ?"""
    output: list[str] = []  # drained, so that the driver never blocks on a full pipe
    threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"sweep exited early:\n{''.join(output)}"
        with contextlib.suppress(sqlite3.Error):
            with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as con:
                rows = con.execute(query, (tracking.TRIAL_TAG,)).fetchall()
            if (sum(status != "RUNNING" for status, _ in rows) >= ended
                    and any(status == "RUNNING" and 0 < logged < epochs for status, logged in rows)):
                return
        time.sleep(0.2)
    raise AssertionError(f"no {ended} ended trials beside a running one in {timeout}s:\n{''.join(output)}")


def _server_processes(db: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(db).encode() in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def _driver(cwd: Path, *args: str) -> subprocess.Popen:
    """`python -m sweeps ARGS` in its own session (so that the test can kill what it leaves),
    output merged into stdout."""
    return subprocess.Popen([sys.executable, "-m", "sweeps", *args], cwd=cwd, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _kill_session(proc: subprocess.Popen) -> None:
    """Whatever a driver's session still runs (Ray's processes, after a driver killed hard)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.e2e
def test_killed_sweep_resumes_without_rerunning_or_duplicating_trials(tmp_path, monkeypatch, local_ray):
    space = write_space(tmp_path / "kill.yaml", LR, trials=6, epochs=3, max_concurrent=2)
    # The embedded default: no --tracking-uri, so the sweep runs its own server over ./mlflow.db.
    proc = _driver(tmp_path, "run", space, "--name", "k", "--seed", "2")
    try:
        _wait_for_interrupted_store(proc, tmp_path / "mlflow.db", 2, epochs=3, timeout=240)
        proc.send_signal(signal.SIGKILL)  # the driver only: Ray and the MLflow server must notice
        proc.wait()
        deadline = time.monotonic() + 30
        while _server_processes(tmp_path / "mlflow.db") and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _server_processes(tmp_path / "mlflow.db"), "the MLflow server outlived its driver"
    finally:
        _kill_session(proc)  # Ray agents the killed driver leaves behind
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


@pytest.mark.e2e
def test_one_driver_per_sweep_refuses_a_second_run_and_a_resume_beside_it(tmp_path):
    space = write_space(tmp_path / "one.yaml", LR, trials=2, epochs=2, max_concurrent=2)
    # Both on the embedded default: without the claim each would start a server over ./mlflow.db.
    drivers = [_driver(tmp_path, "run", space, "--name", "x", "--seed", "0") for _ in range(2)]
    try:
        deadline = time.monotonic() + 600  # generous: imports alone take minutes on a busy 2-core machine
        while all(d.poll() is None for d in drivers):
            assert time.monotonic() < deadline, "neither driver was refused"
            time.sleep(0.2)
        refused = next(d for d in drivers if d.poll() is not None)
        winner = next(d for d in drivers if d is not refused)
        said = refused.stdout.read().strip().splitlines()
        assert refused.returncode == 2 and said[-1].startswith("error: sweep 'x' is already "), said
        assert sum("error" in line.lower() for line in said) == 1  # one line, no traceback
        record = tmp_path / "sweep_results" / "x" / "sweep.json"
        while not record.exists():  # the winner has its parent run: a resume now meets it running
            assert winner.poll() is None and time.monotonic() < deadline + 600, "the winner did not start"
            time.sleep(0.2)
        beside = subprocess.run([sys.executable, "-m", "sweeps", "resume", "x"], cwd=tmp_path, capture_output=True,
                                text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600)
        assert beside.returncode == 2 and "sweep 'x' is already running (pid" in beside.stderr, beside.stderr
        out, _ = winner.communicate(timeout=900)
        assert winner.returncode == 0, out[-3000:]
    finally:
        for driver in drivers:
            _kill_session(driver)
    store = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent, children = sweep_runs(store, "x")  # one parent run: the refused drivers created none
    assert parent.info.status == "FINISHED" and len(children) == 2


@pytest.mark.e2e
def test_sigterm_stops_a_sweep_as_ctrl_c_does_and_resume_continues(tmp_path, monkeypatch, local_ray):
    # A grid, which halving never stops: a trial trained to the end is followed by the third.
    space = write_space(tmp_path / "term.yaml", {"train.lr": {"type": "categorical", "choices": [0.2, 0.4, 0.6, 0.8]}},
                        sampler="grid", trials=4, epochs=3, max_concurrent=2)
    proc = _driver(tmp_path, "run", space, "--name", "t", "--seed", "3")
    try:
        _wait_for_completed_trials(proc, 1, timeout=900)
        # To every process of the driver's group, Ray's included, as `timeout`, a batch scheduler
        # or a systemd stop signals a job's processes; `kill PID` reaches the driver alone.
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=600)
    finally:
        _kill_session(proc)
    assert proc.returncode == 130, out[-3000:]
    shown = re.search(r"Sweep t: (\d+) trials \((.*)\)", out)
    assert shown and int(shown.group(1)) >= 2 and "completed" in shown.group(2), out[-3000:]  # the last rows
    assert "Resume: python -m sweeps resume t" in out
    store = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent, _ = sweep_runs(store, "t")
    assert parent.info.status == "KILLED"

    monkeypatch.chdir(tmp_path)
    assert cli.main(["resume", "t"]) == 0  # Tune saved its state on the way out
    parent, after = sweep_runs(store, "t")
    assert parent.info.status == "FINISHED"
    trial_ids = [r.data.tags[tracking.TRIAL_TAG] for r in after]
    assert len(trial_ids) == len(set(trial_ids)) == 4
    for run in after:
        steps = epochs_logged(store, run)
        assert steps == list(range(1, len(steps) + 1))


def _age(pid: int) -> float:
    """Seconds since process PID started."""
    ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    return float(Path("/proc/uptime").read_text().split()[0]) - ticks / os.sysconf("SC_CLK_TCK")


def _healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


@pytest.mark.e2e
def test_local_server_that_dies_mid_sweep_is_restarted_and_loses_no_metric(tmp_path):
    epochs = 8
    # Trials long enough that one is still training once the server is past its start-up, on
    # a quiet machine too (TINY's 400 sentences ended the sweep first there).
    space = write_space(tmp_path / "die.yaml", {"seed": {"type": "categorical", "choices": [0, 1, 2]}},
                        sampler="grid", trials=3, epochs=epochs, max_concurrent=1,
                        fixed={"data.synthetic_sentences": 4000})
    proc = _driver(tmp_path, "run", space, "--name", "die")
    try:
        deadline = time.monotonic() + 900
        guard = None
        while guard is None:  # the embedded default's guard, in its own session
            assert proc.poll() is None and time.monotonic() < deadline, "no local server started"
            guard = next((pid for pid in _server_processes(tmp_path / "mlflow.db")
                          if "sweeps.tracking" in Path(f"/proc/{pid}/cmdline").read_text()), None)
            time.sleep(0.2)
        port = re.search(r"--port\x00(\d+)", Path(f"/proc/{guard}/cmdline").read_text()).group(1)
        uri = f"http://127.0.0.1:{port}"
        client = MlflowClient(uri)
        mid = None
        while mid is None:  # a trial mid-training, on a server past its start-up
            assert proc.poll() is None and time.monotonic() < deadline, "no trial caught mid-training"
            server = [pid for pid in session_pids(guard) if pid != guard]
            experiment = client.get_experiment_by_name("die") if _healthy(uri) else None
            if experiment and server and min(map(_age, server)) > tracking.server.START_FAILURE_S + 2:
                mid = next((r for r in client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'")
                            if tracking.PARENT_TAG in r.data.tags
                            and 1 <= len(epochs_logged(client, r)) < epochs - 1), None)
            time.sleep(0.3)
        for pid in server:  # the server crashes; its guard lives on
            os.kill(pid, signal.SIGKILL)
        assert not _healthy(uri)
        out, _ = proc.communicate(timeout=1200)
        assert proc.returncode == 0, out[-3000:]
    finally:
        _kill_session(proc)
    assert "restarting it (1 of 3)" in (tmp_path / ".mlflow-server.log").read_text()
    store = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent, children = sweep_runs(store, "die")
    assert parent.info.status == "FINISHED" and len(children) == 3
    assert mid.info.run_id in {r.info.run_id for r in children}
    for run in children:  # every epoch, those trained while the server was down included
        assert (run.info.status, run.data.tags["trial_status"]) == ("FINISHED", "completed")
        assert epochs_logged(store, run) == list(range(1, epochs + 1)) and "test/nll" in run.data.metrics


@pytest.mark.e2e
def test_tracking_server_down_is_one_line_before_ray_starts(tmp_path):
    (tmp_path / "good.yaml").write_text("method: vae\nparams:\n  train.lr: {type: float, low: 0.1, high: 1.0}\n")
    uri = f"http://127.0.0.1:{tracking.free_port()}"  # nothing listens there
    # Timed from after the imports, which take minutes on a busy machine.
    script = ("import json, sys, time, ray, sweeps.engine\nfrom sweeps.cli import main\nstart = time.monotonic()\n"
              f"code = main(['run', 'good.yaml', '--tracking-uri', {uri!r}])\n"
              "print(json.dumps([code, ray.is_initialized(), time.monotonic() - start]))")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=900)
    code, ray_started, seconds = json.loads(proc.stdout.strip().splitlines()[-1])
    assert code == 2 and not ray_started and seconds < 60  # not MLflow's minutes of retries
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith(f"error: tracking server {uri} not healthy"), proc.stderr
    assert not list(tmp_path.glob("sweep_results/*/sweep.json"))


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
