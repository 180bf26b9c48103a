"""MLflow for sweeps: the local tracking server, the sweep's parent run, each trial's child run.

Every MLflow call of the project lives here, so the next MLflow API move touches one file.
All writes go through a tracking server: many trial processes writing one SQLite file
directly would lock and corrupt it, so a sweep without `--tracking-uri` starts its own
server over `./mlflow.db` and `./mlartifacts` and is the only process touching them.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Iterator

import yaml

DB_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
PARENT_TAG = "mlflow.parentRunId"
TRIAL_TAG = "tune_trial_id"
# A trial's outcome as a tag; MLflow's own status says FINISHED / FAILED / KILLED.
OUTCOME_STATUS = {"completed": "FINISHED", "failed": "FAILED", "pruned": "KILLED"}
CURVES = ("train/loss", "val/neg_elbo", "val/recon", "val/kl", "val/mi", "val/au")
MAX_TAG_CHARS = 5000
SHUTDOWN_S = 20
DIVERGED = "diverged: "
"""Prefix of the failure reason of a trial whose loss became NaN or infinite."""


class TrackingError(RuntimeError):
    """The tracking server could not be started or reached."""


def _client(uri: str):
    from mlflow import MlflowClient
    # MLflow prints a "View run at" link for every ended run; the sweep's summary says where.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    return MlflowClient(tracking_uri=uri)


def check_uri(uri: str) -> str:
    """Refuse stores that trial processes would write directly (see the module docstring)."""
    if uri.startswith(("sqlite:", "file:")) or "://" not in uri:
        raise ValueError(f"tracking URI {uri!r}: give a tracking server (http://HOST:PORT); "
                         "without --tracking-uri a local server is started over ./mlflow.db")
    return uri


def server_command(root: str, port: int, *, host: str = "127.0.0.1", backend_store_uri: str | None = None,
                   artifacts_destination: str | None = None, app_name: str | None = None) -> list[str]:
    """`mlflow server` over ROOT/mlflow.db and ROOT/mlartifacts, unless given other stores."""
    db = os.path.join(os.path.abspath(root), DB_FILE)
    return [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port),
            "--workers", "1", "--backend-store-uri", backend_store_uri or f"sqlite:///{db}",
            "--artifacts-destination", artifacts_destination or os.path.join(os.path.abspath(root), ARTIFACTS_DIR),
            *(["--app-name", app_name] if app_name else [])]


def server_environment() -> dict[str, str]:
    # MLflow's server-side job runner (its own worker processes) is not used by sweeps.
    return {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A tracking server: `ready()` waits until it answers and returns its URI."""

    def __init__(self, uri: str, process: subprocess.Popen | None = None, timeout: float = 120.0):
        self.uri, self.process, self.timeout = uri, process, timeout
        self.healthy = process is None  # a given server is the user's to run

    def ready(self) -> str:
        deadline = time.monotonic() + self.timeout
        while not self.healthy:
            if self.process.poll() is not None:
                raise TrackingError(f"mlflow server exited with status {self.process.returncode}; "
                                    "see .mlflow-server.log")
            if time.monotonic() > deadline:
                raise TrackingError(f"mlflow server at {self.uri} not healthy after {self.timeout:.0f}s")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as resp:
                    self.healthy = resp.status == 200
            time.sleep(0 if self.healthy else 0.3)
        return self.uri


@contextlib.contextmanager
def local_server(root: str = ".", port: int | None = None) -> Iterator[Server]:
    """Start `mlflow server` over ROOT/mlflow.db and ROOT/mlartifacts; stop it on exit.

    Yields at once, so that other start-up work overlaps the server's (~20 s on 2 CPUs);
    call `ready()` before using it."""
    port = port or free_port()
    log = open(os.path.join(root, ".mlflow-server.log"), "ab")
    # The guard runs the server in a fresh process group and stops it when asked or when
    # this process dies, even by SIGKILL, so no orphan keeps the SQLite file (see _guard).
    guard = subprocess.Popen([sys.executable, "-m", "sweeps.tracking", str(os.getpid()),
                              *server_command(root, port)],
                             cwd=root, stdout=log, stderr=log, env=server_environment(), start_new_session=True)
    try:
        yield Server(f"http://127.0.0.1:{port}", guard)
    finally:
        guard.terminate()
        try:
            guard.wait(timeout=SHUTDOWN_S + 5)
        except subprocess.TimeoutExpired:
            os.killpg(guard.pid, signal.SIGKILL)
            guard.wait()
        log.close()


def _guard(parent_pid: int, command: list[str]) -> int:
    """Run the server until told to stop (SIGTERM) or the parent process is gone; then
    stop it gracefully (it forwards SIGTERM to its uvicorn workers), or kill the group."""
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    server = subprocess.Popen(command)
    while server.poll() is None:
        if stopping or os.getppid() != parent_pid:  # reparented: the sweep driver died
            server.terminate()
            try:
                server.wait(timeout=SHUTDOWN_S)
            except subprocess.TimeoutExpired:
                os.killpg(0, signal.SIGKILL)
            break
        time.sleep(0.3)
    return 0 if stopping else server.returncode


# --- the sweep's parent run -------------------------------------------------------------

def start_sweep_run(uri: str, name: str, params: dict, tags: dict, space_file: str) -> tuple[str, str]:
    """Create the experiment NAME and its parent run; return (experiment_id, run_id)."""
    from mlflow.entities import Param
    client = _client(uri)
    experiment = client.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
    run = client.create_run(experiment_id, run_name=name, tags=tags)
    items = [Param(k, str(v)[:6000]) for k, v in params.items()]
    for start in range(0, len(items), 100):  # the REST API takes 100 params per batch
        client.log_batch(run.info.run_id, params=items[start:start + 100])
    client.log_artifact(run.info.run_id, space_file, "search_space")
    return experiment_id, run.info.run_id


def reopen_run(uri: str, run_id: str) -> None:
    _client(uri).update_run(run_id, status="RUNNING")


def finish_sweep_run(uri: str, run_id: str, status: str, files: dict[str, str]) -> None:
    """Attach the sweep-level text artifacts (name -> content) and end the parent run."""
    client = _client(uri)
    for name, text in files.items():
        client.log_text(run_id, text, name)
    client.set_terminated(run_id, status)


# --- each trial's child run -------------------------------------------------------------

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
        self.client = _client(uri)
        self.run_id = run_id
        run = self.client.get_run(run_id)
        self.outcome = run.data.tags.get("trial_status")
        """As recorded by an earlier attempt: None, running, completed, pruned or failed."""
        self.reason = run.data.tags.get("failure_reason", "")
        self.test_metrics = {k: v for k, v in run.data.metrics.items() if k.startswith("test/")}
        # Epochs up to here are already logged: a resumed trial retrains at most the epochs
        # after its last checkpoint, deterministically, and must not log them twice.
        history = self.client.get_metric_history(run_id, "val/neg_elbo")
        self.logged_epoch = max((m.step for m in history), default=0)
        self.is_new = not run.data.params

    @classmethod
    def find_or_create(cls, uri: str, experiment_id: str, parent_run_id: str, trial_id: str,
                       run_id: str | None = None) -> "TrialRun":
        """Run `run_id` (from the trial's checkpoint), else this trial's run if one exists
        (it died before its first checkpoint), else a new child run."""
        client = _client(uri)
        if run_id is None:
            found = client.search_runs([experiment_id], max_results=1, filter_string=(
                f"tags.{TRIAL_TAG} = '{trial_id}' and tags.`{PARENT_TAG}` = '{parent_run_id}'"))
            run_id = found[0].info.run_id if found else None
        if run_id is None:
            run_id = client.create_run(experiment_id, run_name=trial_id, tags={
                PARENT_TAG: parent_run_id, TRIAL_TAG: trial_id}).info.run_id
        return cls(uri, run_id)

    @property
    def settled(self) -> bool:
        """Whether an earlier attempt ended the trial for good: trained to the end, or diverged
        (deterministic). A driver killed right after may not have saved that in Tune's state."""
        return self.outcome == "completed" or (self.outcome == "failed" and self.reason.startswith(DIVERGED))

    def start(self) -> None:
        self.client.update_run(self.run_id, status="RUNNING")
        self.client.set_tag(self.run_id, "trial_status", "running")

    def record_placement(self, node_id: str, ip: str, hostname: str, device: str) -> None:
        """Where this attempt runs; `node.attempts` lists the node of every attempt, so a
        trial retried after losing its node shows where it moved."""
        from mlflow.entities import RunTag
        attempts = self.client.get_run(self.run_id).data.tags.get("node.attempts")
        self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in {
            "node.id": node_id, "node.ip": ip, "node.hostname": hostname, "device": device,
            "node.attempts": f"{attempts},{node_id}" if attempts else node_id}.items()])

    def log_config(self, config: dict, method: str | None) -> None:
        """Flattened params, the method (preset or joint-space choice) and the config as
        YAML, re-runnable by `train --config`."""
        if not self.is_new:
            return
        from mlflow.entities import Param
        items = [Param(k, str(v)) for k, v in flatten(config).items()]
        if method is not None:
            items.append(Param("method", method))
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[start:start + 100])
        self.client.log_text(self.run_id, yaml.safe_dump(config, sort_keys=False), "config.yaml")

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[
            Metric(k, float(v), now, step) for k, v in metrics.items()])

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        if epoch > self.logged_epoch:
            self.log_metrics(epoch, metrics)
            self.logged_epoch = epoch

    def log_final(self, epoch: int, metrics: dict[str, float]) -> None:
        if not self.test_metrics:
            self.log_metrics(epoch, metrics)
            self.test_metrics = {k: v for k, v in metrics.items() if k.startswith("test/")}

    def finish(self, outcome: str, reason: str | None = None) -> None:
        """Plot the curves, record the outcome (and why it failed) and end the run."""
        self.client.log_figure(self.run_id, curves_figure(self.client, self.run_id), "curves.png")
        self.client.set_tag(self.run_id, "trial_status", outcome)
        if reason:
            self.client.set_tag(self.run_id, "failure_reason", reason[:MAX_TAG_CHARS])
            self.client.log_text(self.run_id, reason, "failure.txt")
        self.client.set_terminated(self.run_id, OUTCOME_STATUS[outcome])


def close_trial_run(uri: str, experiment_id: str, parent_run_id: str, trial_id: str,
                    outcome: str, reason: str | None = None) -> None:
    """End a trial's run from outside it, if it is still open: its process was stopped
    by the scheduler or lost, so the trial could not end the run itself. A trial whose
    process was lost before it created its run (its node died as it started) gets one
    here, so that every trial of the sweep has its run."""
    client = _client(uri)
    found = client.search_runs([experiment_id], max_results=1, filter_string=(
        f"tags.{TRIAL_TAG} = '{trial_id}' and tags.`{PARENT_TAG}` = '{parent_run_id}'"))
    if not found or found[0].info.status == "RUNNING":
        TrialRun.find_or_create(uri, experiment_id, parent_run_id, trial_id,
                                found[0].info.run_id if found else None).finish(outcome, reason)


def delete_lost_runs(uri: str, experiment_id: str, parent_run_id: str, trial_ids: set[str]) -> int:
    """Soft-delete child runs of trials the sweep no longer has: a driver killed between
    proposing a trial and saving its experiment state loses that trial, and resuming
    proposes a new one. Returns how many were deleted."""
    client = _client(uri)
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
                              max_results=10000)
    lost = [r for r in runs if r.data.tags.get(TRIAL_TAG) not in trial_ids]
    for run in lost:
        client.set_terminated(run.info.run_id, "KILLED")
        client.delete_run(run.info.run_id)
    return len(lost)


def curves_figure(client, run_id: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 3, figsize=(11, 6), constrained_layout=True)
    for ax, key in zip(axes.flat, CURVES):
        points = sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        if points:
            ax.plot(*zip(*points), marker="o", markersize=3)
        ax.set_title(key)
        ax.set_xlabel("epoch")
    plt.close(fig)
    return fig


def load_runs(uri: str, experiment_name: str) -> list:
    """All runs of a sweep's experiment (the parent and its trials), for reports and tests."""
    client = _client(uri)
    experiment = client.get_experiment_by_name(experiment_name)
    return client.search_runs([experiment.experiment_id]) if experiment else []
