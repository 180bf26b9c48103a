"""Faults a sweep meets, injected for real: its driver killed or sent SIGTERM, a second driver
beside it, its tracking server dying or down. Each drives `python -m sweeps` as a user runs
it (a subprocess in its own session) and reads what the sweep left in its MLflow store."""
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from sweeps import cli, engine, tracking
from tests.helpers import LR, REPO, epochs_logged, session_pids, sweep_runs, sweeps_cli, write_space

pytestmark = pytest.mark.e2e


class Driver:
    """`python -m sweeps ARGS` run from CWD in its own session, so that the test can find what it
    leaves; its output read as it comes (a full pipe would block it). ENV adds to the environment."""

    def __init__(self, cwd: Path, *args: str, env: dict | None = None):
        self.proc = subprocess.Popen([sys.executable, "-m", "sweeps", *args], cwd=cwd,
                                     env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self.pid = self.proc.pid
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self.reader.start()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, ready, what: str) -> None:
        """Poll READY() while the driver runs. No clock: a first server start alone may take
        minutes on a busy machine, and a driver gives up by itself (tracking.server.START_S)."""
        while not ready():
            assert self.proc.poll() is None, f"the sweep ended before {what}:\n{self.output[-3000:]}"
            time.sleep(0.1)

    def wait(self) -> int:
        code = self.proc.wait()
        self.reader.join()
        return code

    def kill(self) -> None:
        """What the driver's session still runs: Ray's processes after a driver killed hard; a
        safety net otherwise, for the tests check first that nothing is left."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.wait()


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


def processes_naming(text: str) -> list[int]:
    """Processes whose command line holds TEXT: a store's path, a Ray temp folder."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text.encode() in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


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
    epochs, db = 4, tmp_path / "mlflow.db"
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
            return ended(runs) >= signalled and len(running) == 2 and all(1 <= n <= epochs - 2 for n in running)

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


def test_local_server_that_dies_mid_sweep_is_restarted_and_loses_no_metric(tmp_path):
    epochs = 8
    # Trials long enough that one is still training once the server is past its start-up, on
    # a quiet machine too (TINY's 400 sentences ended the sweep first there).
    space = write_space(tmp_path / "die.yaml", {"seed": {"type": "categorical", "choices": [0, 1, 2]}},
                        sampler="grid", trials=3, epochs=epochs, max_concurrent=1,
                        fixed={"data.synthetic_sentences": 4000})
    driver = Driver(tmp_path, "run", space, "--name", "die")
    proc = driver.proc
    try:
        deadline = time.monotonic() + 900
        guard = None
        while guard is None:  # the embedded default's guard, in its own session
            assert proc.poll() is None and time.monotonic() < deadline, "no local server started"
            guard = next((pid for pid in processes_naming(str(tmp_path / "mlflow.db"))
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
        assert driver.wait() == 0, driver.output[-3000:]
    finally:
        driver.kill()
    assert "restarting it (1 of 3)" in (tmp_path / ".mlflow-server.log").read_text()
    store = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent, children = sweep_runs(store, "die")
    assert parent.info.status == "FINISHED" and len(children) == 3
    assert mid.info.run_id in {r.info.run_id for r in children}
    for run in children:  # every epoch, those trained while the server was down included
        assert (run.info.status, run.data.tags["trial_status"]) == ("FINISHED", "completed")
        assert epochs_logged(store, run) == list(range(1, epochs + 1)) and "test/nll" in run.data.metrics


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
