"""A tracking server that is away, for real: the sweep's own server killed mid-sweep, a user's
server stopped and started again, a server down before the sweep starts. What a user must not
feel is a stall: trials train on through the outage, in their first attempt, and write what the
server missed once it is back."""
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from sweeps import cli, tracking
from sweeps.names import TEST_PROGRESS
from tests.helpers import REPO, Driver, epochs_logged, processes_naming, session_pids, sweep_runs, write_space

pytestmark = pytest.mark.e2e

EPOCH_GAP_S = 20
"""The most two consecutive epochs of a trial may lie apart, an outage included: an epoch takes a
few seconds here, and a call to a server that is away fails in seconds (tracking.client's
HTTP_SETTINGS), where MLflow's default retries hold it about 4 minutes."""


def long_trial(path: Path, epochs: int) -> str:
    """A space of one trial of EPOCHS epochs of seconds each (4000 sentences), every one of them
    trained (its lr never decays, so it never stops early): it outlives an outage of the server."""
    return write_space(path, {"seed": {"type": "categorical", "choices": [0]}}, sampler="grid", trials=1,
                       epochs=epochs, max_concurrent=1,
                       fixed={"data.synthetic_sentences": 4000, "train.decay_after": 10 * epochs})


def epoch_reports(results: Path) -> dict[str, list[tuple[int, int]]]:
    """Trial id -> (epoch, Tune's timestamp in whole seconds) of each epoch it reported, from
    the result.json files of the sweep's Tune experiment at RESULTS."""
    reports: dict[str, list[tuple[int, int]]] = {}
    for path in results.glob("*/result.json"):
        for line in path.read_text().split("\n")[:-1]:  # whole lines: Tune may be writing the last
            result = json.loads(line)
            if TEST_PROGRESS not in result and "trial_status" not in result:
                reports.setdefault(result["trial_id"], []).append((result["epoch"], result["timestamp"]))
    return reports


def assert_no_stall(client: MlflowClient, name: str, results: Path, epochs: int, down: float, back: float) -> None:
    """Sweep NAME completed with every epoch of every trial, a trial reported an epoch while the
    server was away (between DOWN and BACK), in its first attempt, and no trial's consecutive
    epochs lie more than EPOCH_GAP_S apart."""
    parent, runs = sweep_runs(client, name)
    assert parent.info.status == "FINISHED"
    for run in runs:  # every epoch, those trained while the server was away included
        assert (run.info.status, run.data.tags["trial_status"]) == ("FINISHED", "completed")
        assert epochs_logged(client, run) == list(range(1, epochs + 1)) and "test/nll" in run.data.metrics
    reports = epoch_reports(results)
    # A timestamp is the whole second the report fell in.
    during = {trial for trial, times in reports.items() if any(down <= t and t + 1 <= back for _, t in times)}
    assert during, (down, back, reports)
    attempts = {r.data.tags[tracking.TRIAL_TAG]: r.data.tags["node.attempts"] for r in runs}
    assert all("," not in attempts[trial] for trial in during), attempts  # trained on, not retried
    for times in reports.values():
        stamps = sorted(t for _, t in times)
        assert max(b - a for a, b in zip(stamps, stamps[1:])) < EPOCH_GAP_S, stamps


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


def test_local_server_that_dies_mid_sweep_is_restarted_without_a_stall_or_a_lost_metric(tmp_path):
    epochs, db = 50, tmp_path / "mlflow.db"
    space = long_trial(tmp_path / "die.yaml", epochs)
    driver = Driver(tmp_path, "run", space, "--name", "die", env={"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "0"})
    try:
        def guard() -> int | None:  # the embedded default's guard, in its own session
            return next((pid for pid in processes_naming(str(db))
                         if "sweeps.tracking" in Path(f"/proc/{pid}/cmdline").read_text()), None)

        driver.wait_for(guard, "a local server started")
        port = re.search(r"--port\x00(\d+)", Path(f"/proc/{guard()}/cmdline").read_text()).group(1)
        uri = f"http://127.0.0.1:{port}"
        client = MlflowClient(uri)

        def server() -> list[int]:
            return [pid for pid in session_pids(guard()) if pid != guard()]

        def early_in_training() -> bool:
            """The trial has half its epochs or more to go, on a server past its start-up (the
            guard restarts only a server that ran that long)."""
            if not server() or min(map(_age, server())) <= tracking.server.START_FAILURE_S + 2 or not _healthy(uri):
                return False
            experiment = client.get_experiment_by_name("die")
            runs = client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'") if experiment else []
            return any(tracking.PARENT_TAG in r.data.tags and 1 <= len(epochs_logged(client, r)) <= epochs // 2
                       for r in runs)

        driver.wait_for(early_in_training, "the trial was caught early in its training")
        for pid in server():  # the server crashes; its guard lives on
            os.kill(pid, signal.SIGKILL)
        down = time.time()
        assert not _healthy(uri)
        driver.wait_for(lambda: _healthy(uri), "the server answered again")
        back = time.time()
        assert driver.wait() == 0, driver.output[-3000:]
    finally:
        driver.kill()
    assert "restarting it (1 of 3)" in (tmp_path / ".mlflow-server.log").read_text()
    # With every writer gone the store can be read directly.
    assert_no_stall(MlflowClient(f"sqlite:///{db}"), "die", tmp_path / "sweep_results" / "die", epochs, down, back)


def test_users_server_stopped_and_started_again_mid_sweep_costs_no_stall_or_metric(tmp_path, monkeypatch,
                                                                                   local_ray):
    epochs = 30
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "0")  # Tune's result.json, with each report's time
    space = long_trial(tmp_path / "away.yaml", epochs)
    results = tmp_path / "sweep_results" / "away"
    port = tracking.free_port()
    uri = f"http://127.0.0.1:{port}"

    def start() -> subprocess.Popen:
        """The user's `mlflow server`, over the same store each time."""
        server = subprocess.Popen(tracking.server_command(str(tmp_path), port), cwd=tmp_path,
                                  env=tracking.server_environment(), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
        tracking.Server(uri, server).ready()
        return server

    servers = [start()]
    times: dict[str, float] = {}
    done = threading.Event()

    def wait_for(ready) -> bool:
        while not ready():
            if done.is_set():
                return False
            time.sleep(0.2)
        return True

    def outage() -> None:
        """Stop the server once the trial logged its first epoch; start it again once the trial
        reported an epoch while it was away."""
        client = MlflowClient(uri)

        def first_epoch_logged() -> bool:
            experiment = client.get_experiment_by_name("away")
            return bool(experiment) and any(epochs_logged(client, r) for r in client.search_runs(
                [experiment.experiment_id]) if tracking.PARENT_TAG in r.data.tags)

        def reported_while_down() -> bool:
            return any(t >= times["down"] for reports in epoch_reports(results).values() for _, t in reports)

        if not wait_for(first_epoch_logged):
            return
        os.killpg(servers[0].pid, signal.SIGTERM)
        servers[0].wait()
        times["down"] = time.time()
        if wait_for(reported_while_down):
            servers.append(start())
            times["back"] = time.time()

    thread = threading.Thread(target=outage, daemon=True)
    thread.start()
    try:
        assert cli.main(["run", space, "--name", "away", "--tracking-uri", uri]) == 0
        assert len(servers) == 2, "the server was not stopped and started again mid-sweep"
        assert_no_stall(MlflowClient(uri), "away", results, epochs, times["down"], times["back"])
    finally:
        done.set()
        thread.join()
        for server in servers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGTERM)
            server.wait()


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
