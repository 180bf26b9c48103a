"""Faults of a sweep's driver, injected for real: killed, sent SIGTERM, a second driver beside
it. Each drives `python -m sweeps` as a user runs it (a subprocess in its own session) and
reads what the sweep left in its MLflow store. A tracking server that is away: test_outages.py."""
import contextlib
import os
import re
import shutil
import signal
import socket
import sqlite3
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from sweeps import cli, engine, tracking
from tests.helpers import (LR, Driver, epochs_logged, processes_naming, session_pids, sweep_runs, sweeps_cli,
                           write_space)

pytestmark = pytest.mark.e2e


def trial_runs(db: Path) -> list[tuple[str, int]]:
    """(status, epochs logged) of every trial run in the store at DB, read beside its server
    (read-only; none while the store is being made)."""
    query = """SELECT r.status, (SELECT COUNT(*) FROM metrics m WHERE m.run_uuid = r.run_uuid
                                 AND m.key = 'val/neg_elbo')
               FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = ?"""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as con:
            return con.execute(query, (tracking.TRIAL_TAG,)).fetchall()
    except sqlite3.Error:
        return []


def ended(runs: list[tuple[str, int]]) -> int:
    return sum(status != "RUNNING" for status, _ in runs)


def assert_nothing_left(driver: Driver, *names: str) -> None:
    """Once DRIVER exited, nothing of its session nor any process naming NAMES lives on, given
    the seconds Ray's shutdown and the tracking server's stop take (tracking.server.SHUTDOWN_S)."""
    def left():
        return sorted(set(session_pids(driver.pid)) | {pid for name in names for pid in processes_naming(name)})

    deadline = time.monotonic() + tracking.server.SHUTDOWN_S + 10
    while left() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left(), {pid: Path(f"/proc/{pid}/cmdline").read_bytes() for pid in left()}


@pytest.fixture
def ray_tmp():
    """A Ray temp folder of its own for the drivers a test starts (RAY_TMPDIR), so that every
    process of their Ray names it; short, as Ray's socket paths must fit in 107 bytes."""
    path = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_killed_sweep_resumes_without_rerunning_or_duplicating_trials(tmp_path, monkeypatch, local_ray):
    space = write_space(tmp_path / "kill.yaml", LR, trials=6, epochs=3, max_concurrent=2)
    db = tmp_path / "mlflow.db"
    # The embedded default: no --tracking-uri, so the sweep runs its own server over ./mlflow.db.
    driver = Driver(tmp_path, "run", space, "--name", "k", "--seed", "2")
    try:
        driver.wait_for(lambda: ended(runs := trial_runs(db)) >= 2
                        and any(status == "RUNNING" and 0 < logged < 3 for status, logged in runs),
                        "two trials ended beside one mid-training")
        driver.proc.send_signal(signal.SIGKILL)  # the driver only: Ray and the MLflow server must notice
        driver.wait()
        deadline = time.monotonic() + tracking.server.SHUTDOWN_S + 10  # the guard stops the server so
        while processes_naming(str(db)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not processes_naming(str(db)), "the MLflow server outlived its driver"
    finally:
        driver.kill()  # Ray agents the killed driver leaves behind
    # With every writer gone the store can be read directly.
    store = MlflowClient(f"sqlite:///{db}")
    _, before = sweep_runs(store, "k")
    finished = {r.data.tags[tracking.TRIAL_TAG]: r.info.end_time for r in before if r.info.status != "RUNNING"}
    assert finished and any(r.info.status == "RUNNING" for r in before)

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
        if run.data.tags[tracking.TRIAL_TAG] in finished:  # finished before the kill: not rerun
            assert run.info.end_time == finished[run.data.tags[tracking.TRIAL_TAG]]
    study = engine.load_study(str(tmp_path / "sweep_results" / "k"))
    assert len(study.trials) >= 6
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    # The Optuna storage holds every trial once, however often its end was reported.
    mirror = optuna.load_study(study_name="k", storage=engine.storage_url(str(tmp_path / "sweep_results" / "k")))
    mirrored = [t.user_attrs["tune_trial_id"] for t in mirror.trials]
    assert len(mirrored) == len(set(mirrored)) and set(trial_ids) <= set(mirrored)


def test_one_driver_per_sweep_refuses_a_second_run_and_a_resume_beside_it(tmp_path):
    space = write_space(tmp_path / "one.yaml", LR, trials=2, epochs=2, max_concurrent=2)
    lock, record = (tmp_path / "sweep_results" / "x" / name for name in ("driver.lock", "sweep.json"))
    # Both on the embedded default: without the claim each would start a server over ./mlflow.db.
    first = Driver(tmp_path, "run", space, "--name", "x", "--seed", "0")
    try:
        # The others run while the first is held still (SIGSTOP) with the sweep claimed, however
        # long their imports take. A second `run` must come while the first has not yet written
        # sweep.json (it waits for its server's start, seconds at least, in between), or `run`'s
        # own check of sweep.json would refuse it before the claim is tried.
        first.wait_for(lambda: f"pid {first.pid} " in (lock.read_text() if lock.exists() else ""),
                       "the first driver claimed the sweep")
        first.proc.send_signal(signal.SIGSTOP)
        assert not record.exists(), "the first driver got past its server's start before it could be held"
        second = sweeps_cli("run", space, "--name", "x", "--seed", "0", cwd=tmp_path, timeout=600)
        said = second.stderr.strip().splitlines()
        assert second.returncode == 2 and said == [f"error: sweep 'x' is already running (pid {first.pid} on "
                                                   f"{socket.gethostname()}): one driver per sweep"], said
        first.proc.send_signal(signal.SIGCONT)
        first.wait_for(record.exists, "the first driver wrote sweep.json")  # its parent run: a resume meets it
        first.proc.send_signal(signal.SIGSTOP)
        beside = sweeps_cli("resume", "x", cwd=tmp_path, timeout=600)
        first.proc.send_signal(signal.SIGCONT)
        assert beside.returncode == 2 and f"sweep 'x' is already running (pid {first.pid} " in beside.stderr, \
            beside.stderr
        assert first.wait() == 0, first.output[-3000:]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(first.pid, signal.SIGCONT)
        first.kill()
    store = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent, children = sweep_runs(store, "x")  # one parent run: the refused drivers created none
    assert parent.info.status == "FINISHED" and len(children) == 2


def test_sigterm_to_the_group_or_the_driver_stops_a_sweep_as_ctrl_c_does_and_resume_continues(
        tmp_path, monkeypatch, local_ray, ray_tmp):
    epochs, db = 5, tmp_path / "mlflow.db"
    # A grid, which halving never stops: six trials of equal length, two at a time, which start
    # and end together; 4000 sentences make an epoch last seconds.
    space = write_space(tmp_path / "term.yaml",
                        {"train.lr": {"type": "categorical", "choices": [0.2, 0.3, 0.4, 0.5, 0.6, 0.7]}},
                        sampler="grid", trials=6, epochs=epochs, max_concurrent=2,
                        fixed={"data.synthetic_sentences": 4000})

    def stop(driver: Driver, signalled: int, send) -> dict[str, tuple[int, str]]:
        """Send the signal once SIGNALLED trials ended and two are mid-training with two epochs
        or more to go, so that none ends before the signal is handled; check that the driver
        stops as on Ctrl-C and leaves nothing running. The end time and attempts of each trial
        ended so far."""
        def ready() -> bool:
            runs = trial_runs(db)
            running = [logged for status, logged in runs if status == "RUNNING"]
            # At most an epoch apart: resumed from such checkpoints, the two end and the next two
            # start at most about an epoch apart, so that the second signal finds a moment with
            # both mid-training (at 4 epochs and on a quiet machine's one-second epochs, a pair
            # stopped two epochs apart left none).
            return (ended(runs) >= signalled and len(running) == 2 and max(running) - min(running) <= 1
                    and 1 <= min(running) and max(running) <= epochs - 2)

        driver.wait_for(ready, f"{signalled} trials ended beside two mid-training")
        send()
        assert driver.wait() == 130, driver.output[-3000:]
        assert_nothing_left(driver, ray_tmp, str(db))  # no orphan of Ray or of the MLflow server
        shown = re.search(r"Sweep t: (\d+) trials \((.*)\)", driver.output)
        counts = {outcome: int(n) for n, outcome in re.findall(r"(\d+) (\w+)", shown.group(2))}
        assert "Resume: python -m sweeps resume t" in driver.output
        parent, runs = sweep_runs(MlflowClient(f"sqlite:///{db}"), "t")
        assert parent.info.status == "KILLED"
        finished = {r.data.tags[tracking.TRIAL_TAG]: r for r in runs if r.info.status != "RUNNING"}
        assert int(shown.group(1)) == len(runs) == len(finished) + 2  # every trial Tune started has its run
        assert counts.pop("completed") == len(finished) and sum(counts.values()) == 2, shown.group(0)
        assert all(r.data.tags["trial_status"] == "completed" for r in finished.values())
        return {trial: (run.info.end_time, run.data.tags["node.attempts"]) for trial, run in finished.items()}

    env = {"RAY_TMPDIR": ray_tmp}
    group = Driver(tmp_path, "run", space, "--name", "t", env=env)
    try:
        # To every process of the driver's group, Ray's included, as `timeout`, a batch scheduler
        # or a systemd stop signals a job's processes.
        first = stop(group, 2, lambda: os.killpg(group.pid, signal.SIGTERM))
    finally:
        group.kill()
    alone = Driver(tmp_path, "resume", "t", env=env)
    try:
        second = stop(alone, len(first) + 2, lambda: os.kill(alone.pid, signal.SIGTERM))  # `kill PID`
    finally:
        alone.kill()
    assert all("," not in attempts for _, attempts in first.values())  # trained in one attempt
    assert {trial: second[trial] for trial in first} == first  # the resume left them as they were

    monkeypatch.chdir(tmp_path)
    assert cli.main(["resume", "t"]) == 0  # Tune saved its state on the way out
    store = MlflowClient(f"sqlite:///{db}")
    parent, runs = sweep_runs(store, "t")
    assert parent.info.status == "FINISHED"
    trial_ids = [r.data.tags[tracking.TRIAL_TAG] for r in runs]
    assert len(trial_ids) == len(set(trial_ids)) == 6  # the interrupted trials continued in their own runs
    for run in runs:
        trial = run.data.tags[tracking.TRIAL_TAG]
        assert (run.info.status, run.data.tags["trial_status"]) == ("FINISHED", "completed")
        assert epochs_logged(store, run) == list(range(1, epochs + 1)) and "test/nll" in run.data.metrics
        if trial in second:  # ended before a signal: not rerun, not ended again
            assert (run.info.end_time, run.data.tags["node.attempts"]) == second[trial]
    results = str(tmp_path / "sweep_results" / "t")
    assert [t.state for t in engine.load_study(results).trials] == [optuna.trial.TrialState.COMPLETE] * 6
    mirror = optuna.load_study(study_name="t", storage=engine.storage_url(results))
    values = {r.data.tags[tracking.TRIAL_TAG]: [r.data.metrics["test/nll"], r.data.metrics["test/au"]] for r in runs}
    assert {t.user_attrs["tune_trial_id"]: t.values for t in mirror.trials} == values
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in mirror.trials)
