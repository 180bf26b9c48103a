"""The head node lost mid-sweep, as docs/cluster.md's table of faults says it is survived: a Ray
head and a worker node on this machine (tests/test_cluster.py's `Node`), the tracking server
with MLflow's basic-auth app over a real PostgreSQL server standing in for a managed database
outside the cluster, Tune's state and MLflow's artifacts on a shared directory; a sweep
submitted as a Ray Job; the head killed outright mid-sweep (Ray head, the job's driver, the
tracking server: SIGKILL), a new head started over the same database and shared directory, and
the sweep submitted again under its name."""
import os
import secrets
import signal
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow import MlflowClient
from mlflow.entities import ViewType

from sweeps import cli, engine, tracking
from tests import postgres as pg
from tests.test_cluster import SWEEP, Node, sweeps

NAME = "headless"
EPOCHS = 6
NODE_TRIES = 3


def _node(env: dict, *options: str) -> Node:
    """A node, started again when its raylet misses Ray's fixed 30 s to register with the GCS, as
    on this shared 2-core machine under load (`ray start` then says so and exits 1)."""
    for attempt in range(NODE_TRIES):
        try:
            return Node(env, *options)
        except AssertionError as err:
            if "timed out during startup" not in str(err) or attempt == NODE_TRIES - 1:
                raise


class Head:
    """What cluster.yaml puts on a head node: the tracking server (over PostgreSQL) with the nodes'
    user made by its admin, and `ray start --head` with the tracking URI and the shared storage
    in its environment, which the sweeps' drivers inherit; and one worker node joined to it."""

    def __init__(self, env: dict, postgres: pg.Postgres, shared: Path, root: Path):
        self.env, port = env, tracking.free_port()
        self.server = pg.start_tracking_server(root, shared / "mlflow-artifacts", port, postgres)
        self.nodes = []
        try:
            self.uri = tracking.Server(f"http://127.0.0.1:{port}", self.server).ready()
            self.user = pg.tracking_user(self.uri)
            assert self.user.returncode == 0, self.user.stderr
            dashboard = tracking.free_port()
            head_env = {**env, "MLFLOW_TRACKING_URI": self.uri, "SWEEPS_STORAGE": str(shared / "sweep_results")}
            self.nodes.append(_node(head_env, "--head", "--port", str(tracking.free_port()), "--include-dashboard",
                                   "true", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
                                   "--ray-client-server-port", str(tracking.free_port())))
            gcs = Path(self.nodes[0].temp, "ray_current_cluster").read_text().strip()
            self.nodes.append(_node(env, "--address", gcs))
            self.address = f"http://127.0.0.1:{dashboard}"
        except BaseException:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL to the head's every process (Ray's, the job's driver, the tracking server's)
        and to the worker node's: with its head gone a worker's raylet exits by itself once it has
        not reached the GCS for a minute, taking its trials with it; the test does not wait for that."""
        pg.stop(self.server, signal.SIGKILL)
        for node in self.nodes:
            node.kill()


def _mid_sweep(client: MlflowClient, head: Head, job: str, experiment_dir: Path, timeout: float) -> None:
    """Wait until a trial has completed and another is training with an epoch checkpointed, both
    in an experiment state Tune has saved (every 10 s at most): a trial the lost driver had
    started since is lost with it, by design (its run is deleted and a new trial proposed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        saved = "".join(path.read_text() for path in experiment_dir.glob("experiment_state-*.json"))
        experiment = client.get_experiment_by_name(NAME)
        trials = [r for r in client.search_runs([experiment.experiment_id])
                  if tracking.PARENT_TAG in r.data.tags and r.data.tags[tracking.TRIAL_TAG] in saved] \
            if experiment else []
        if (any(r.info.status == "FINISHED" for r in trials)
                and any(r.info.status == "RUNNING"
                        and 0 < len(client.get_metric_history(r.info.run_id, "val/neg_elbo")) < EPOCHS
                        for r in trials)):
            return
        time.sleep(0.5)
    logs = sweeps(head.env, "logs", job, "--address", head.address)
    raise AssertionError(f"no trial completed beside a running one in {timeout}s:\n{logs.stdout[-3000:]}")


def _recorded(client: MlflowClient) -> dict:
    """Every run of the sweep, deleted ones included: (trial id, status, end time, params, each
    metric's (step, value) history)."""
    experiment = client.get_experiment_by_name(NAME)
    runs = client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL)
    return {r.info.run_id: (r.data.tags.get(tracking.TRIAL_TAG), r.info.status, r.info.end_time, r.data.params,
                            {key: sorted((m.step, m.value) for m in client.get_metric_history(r.info.run_id, key))
                             for key in r.data.metrics}, r.info.lifecycle_stage)
            for r in runs}


@pytest.mark.e2e
def test_a_sweep_survives_losing_its_head(postgres, tmp_path, monkeypatch, capsys):
    shared = tmp_path / "shared"  # as /mnt/shared: every node's, and the next head's
    env = {**os.environ, **pg.WORKER, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "RAY_USAGE_STATS_ENABLED": "0",
           # A job's entrypoint runs `python` from the node's PATH: this environment's.
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}
    env.pop("RAY_ADDRESS", None)
    for key, value in pg.WORKER.items():  # this test's own MLflow calls
        monkeypatch.setenv(key, value)
    # As docs/cluster.md submits: no --tracking-uri and no --storage, the head's own.
    submit = ["submit", *SWEEP, "--epochs", str(EPOCHS), "--name", NAME]

    first = Head(env, postgres, shared, tmp_path / "head-1")
    try:
        done = sweeps(env, *submit, "--address", first.address)
        assert done.returncode == 0 and f"sweep-{NAME}-1" in done.stdout, done.stderr
        _mid_sweep(MlflowClient(first.uri), first, f"sweep-{NAME}-1", shared / "sweep_results" / NAME, timeout=900)
    finally:
        first.kill()

    second = Head(env, postgres, shared, tmp_path / "head-2")
    try:
        # The users outlived the head in PostgreSQL: the nodes' user is found, its password set again.
        assert "MLflow user 'sweeps' updated" in second.user.stdout
        client = MlflowClient(second.uri)
        before = _recorded(client)
        # The new head knows no earlier job: the job's own number starts again at 1.
        again = sweeps(env, *submit, "--address", second.address)
        assert again.returncode == 0 and f"sweep-{NAME}-1" in again.stdout, again.stderr
        logs = sweeps(env, "logs", f"sweep-{NAME}-1", "--follow", "--address", second.address, timeout=1200)
        assert logs.returncode == 0, logs.stdout[-3000:]
        after = _recorded(client)

        parents = [r for r, (trial, *_) in after.items() if trial is None]
        assert len(parents) == 1 and after[parents[0]][1] == "FINISHED"
        trials = {run: record for run, record in after.items() if record[0] is not None and record[5] == "active"}
        trial_ids = [record[0] for record in trials.values()]
        assert len(trial_ids) == len(set(trial_ids)) == 4  # every trial exactly once in MLflow
        for run, (trial, status, end, params, metrics, stage) in before.items():
            if trial is None:
                continue
            assert run in trials, f"trial {trial}'s run {run} ({status}) was lost or replaced"
            new_status, new_end, new_params, new_metrics = trials[run][1:5]
            assert params.items() <= new_params.items()
            for key, history in metrics.items():  # nothing recorded before the loss is lost
                assert set(history) <= set(new_metrics[key]), (trial, key)
            if status == "FINISHED":  # completed before the loss: not rerun
                assert (new_status, new_end, new_metrics) == (status, end, metrics), trial
        for run, (trial, status, end, params, metrics, stage) in trials.items():
            steps = [step for step, _ in metrics.get("val/neg_elbo", [])]
            if status == "FAILED":  # a trial that could not go on says why
                assert client.get_run(run).data.tags.get("failure_reason"), trial
            else:  # the others finished, from their checkpoints: every epoch once
                assert status == "FINISHED" and steps == list(range(1, EPOCHS + 1)), (trial, status, steps)
        assert f"sweep '{NAME}' exists in" in logs.stdout and "resuming it" in logs.stdout, logs.stdout[-3000:]
        # ... and exactly once in the Optuna storage on the shared directory.
        mirror = optuna.load_study(study_name=NAME, storage=engine.storage_url(str(shared / "sweep_results" / NAME)))
        assert sorted(t.user_attrs["tune_trial_id"] for t in mirror.trials) == sorted(trial_ids)

        monkeypatch.chdir(tmp_path)
        capsys.readouterr()
        assert cli.main(["pareto", NAME, "--out", "front.png", "--tracking-uri", second.uri]) == 0
        assert cli.main(["export-best", NAME, "--out", "best.yaml", "--tracking-uri", second.uri]) == 0
        assert "completed trials" in capsys.readouterr().out
        assert yaml.safe_load((tmp_path / "best.yaml").read_text())["seed"] in (0, 1, 2, 3)
    finally:
        second.kill()
