"""PostgreSQL as the tracking store: a real server on loopback (tests/postgres.py), `sweeps server`
with MLflow's basic-auth app keeping runs and users in it, and sweeps through it as the nodes'
non-admin user: concurrent trials, a killed driver resumed, the analysis commands."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import psycopg
import pytest
import yaml
from mlflow import MlflowClient

from sweeps import cli, engine, tracking
from tests import postgres as pg
from tests.helpers import LR, Driver, epochs_logged, sweep_runs, write_space

pytestmark = pytest.mark.e2e

GRID = {"train.lr": {"type": "categorical", "choices": [0.2, 0.4, 0.6, 0.8]}}


@pytest.fixture(scope="module")
def pg_tracking(postgres, tmp_path_factory):
    """(URI, working directory) of a basic-auth `sweeps server` over PostgreSQL, with the nodes' user."""
    root = tmp_path_factory.mktemp("pg-tracking")
    port = tracking.free_port()
    server = pg.start_tracking_server(root / "server", root / "artifacts", port, postgres)
    try:
        uri = tracking.Server(f"http://127.0.0.1:{port}", server).ready()
        made = pg.tracking_user(uri)
        assert made.returncode == 0, made.stderr
        yield uri, root / "server"
    finally:
        pg.stop(server)


def query(postgres: pg.Postgres, sql: str, *params) -> list[tuple]:
    with psycopg.connect(host="127.0.0.1", port=postgres.port, user="sweeps", password=postgres.password,
                         dbname="mlflow", connect_timeout=10) as con:
        return con.execute(sql, params).fetchall()


def sweeps(cwd: Path, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    """`python -m sweeps ARGS` as the nodes' user."""
    return subprocess.run([sys.executable, "-m", "sweeps", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **pg.WORKER}, timeout=timeout)


def test_the_users_live_in_postgresql_and_the_nodes_user_is_no_admin(postgres, pg_tracking, monkeypatch):
    uri, cwd = pg_tracking
    assert dict(query(postgres, "SELECT username, is_admin FROM users")) == {"admin": True, "sweeps": False}
    assert not (cwd / "basic_auth.db").exists() and (cwd / tracking.AUTH_CONFIG).stat().st_mode & 0o077 == 0
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "sweeps")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong-password-1")
    with pytest.raises(tracking.TrackingError, match="401"):
        tracking.check_access(uri)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", pg.WORKER["MLFLOW_TRACKING_PASSWORD"])
    tracking.check_access(uri)


def test_the_auth_config_names_the_users_database_as_mlflow_reads_it(tmp_path, monkeypatch):
    from mlflow.server.auth.config import read_auth_config
    uri = "postgresql://sweeps:p%40ss@db.example:5432/mlflow"  # a percent-encoded password
    (tmp_path / tracking.AUTH_CONFIG).write_text("left by an earlier start")
    (tmp_path / tracking.AUTH_CONFIG).chmod(0o644)
    for key, value in tracking.auth_environment(str(tmp_path), uri).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_USERNAME", raising=False)
    config = read_auth_config()
    assert (config.database_uri, config.admin_username, config.default_permission) == (uri, "admin", "READ")
    assert (tmp_path / tracking.AUTH_CONFIG).stat().st_mode & 0o077 == 0


def test_a_database_that_refuses_the_server_is_one_line(postgres, tmp_path):
    wrong = {**os.environ, "PGPASSWORD": "not-the-password"}
    refused = subprocess.run([sys.executable, "-m", "sweeps", "server", "--port", str(tracking.free_port()),
                              "--backend-store-uri", postgres.uri()], cwd=tmp_path, env=wrong,
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and refused.stderr.startswith(f"error: database {postgres.uri()}: ")
    assert "password authentication failed" in refused.stderr and refused.stderr.count("\n") == 1, refused.stderr


def test_a_sweep_of_concurrent_trials_and_its_analysis_through_postgresql(postgres, pg_tracking, tmp_path,
                                                                          monkeypatch, capsys):
    uri, _ = pg_tracking
    # A grid trains every trial to the end: four completed trials for the analysis.
    space = write_space(tmp_path / "pg.yaml", GRID, sampler="grid", trials=4, epochs=2, max_concurrent=2)
    done = sweeps(tmp_path, "run", space, "--name", "pg", "--tracking-uri", uri, "--seed", "0")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    client = MlflowClient(uri)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "sweeps")  # the client's requests, from here on
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", pg.WORKER["MLFLOW_TRACKING_PASSWORD"])
    parent, children = sweep_runs(client, "pg")
    assert parent.info.status == "FINISHED"  # written as the nodes' user, the only one its processes had
    assert len({r.data.tags[tracking.TRIAL_TAG] for r in children}) == len(children) == 4
    for run in children:
        assert (run.info.status, run.data.tags["trial_status"]) == ("FINISHED", "completed")
        assert epochs_logged(client, run) == [1, 2] and "test/nll" in run.data.metrics
    spans = sorted((r.info.start_time, r.info.end_time) for r in children)
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:]))  # two trials at once
    # Written to PostgreSQL, nowhere else: the parent run and its four trials.
    assert query(postgres, "SELECT count(*) FROM runs JOIN experiments USING (experiment_id) "
                           "WHERE experiments.name = %s", "pg") == [(5,)]
    assert not list(tmp_path.glob("*.db"))

    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    for argv in (["trials", "pg", "--out", "trials.parquet"], ["pareto", "pg", "--out", "front.png"],
                 ["export-best", "pg", "--out", "best.yaml"], ["sensitivity", "pg", "--prefix", "pg-"],
                 ["report", "pg", "--out", "report.md"]):
        assert cli.main([*argv, "--tracking-uri", uri]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "of 4 completed trials" in out
    assert float(yaml.safe_load(Path("best.yaml").read_text())["train"]["lr"]) in GRID["train.lr"]["choices"]
    assert all(Path(f).stat().st_size > 0 for f in ("trials.parquet", "front.png", "pg-curve.png", "report.md"))
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "analysis")}
    assert {"analysis/front.png", "analysis/report.md", "analysis/pg-curve.png"} <= logged


def _mid_sweep(client: MlflowClient, name: str, ended: int, epochs: int) -> bool:
    """Whether `ended` trial runs have ended while another runs with some but not all of its epochs logged."""
    experiment = client.get_experiment_by_name(name)
    trials = [r for r in client.search_runs([experiment.experiment_id])
              if tracking.PARENT_TAG in r.data.tags] if experiment else []
    return (sum(r.info.status != "RUNNING" for r in trials) >= ended
            and any(r.info.status == "RUNNING" and 0 < len(epochs_logged(client, r)) < epochs for r in trials))


def test_a_killed_driver_resumes_through_postgresql(pg_tracking, tmp_path, monkeypatch):
    uri, _ = pg_tracking
    for key, value in pg.WORKER.items():  # the driver's, and this test's client's
        monkeypatch.setenv(key, value)
    space = write_space(tmp_path / "kill.yaml", LR, trials=6, epochs=3, max_concurrent=2)
    driver = Driver(tmp_path, "run", space, "--name", "pg-kill", "--seed", "2", "--tracking-uri", uri)
    client = MlflowClient(uri)
    try:
        driver.wait_for(lambda: _mid_sweep(client, "pg-kill", ended=2, epochs=3),
                        "two trials ended beside one mid-training")
        driver.proc.send_signal(signal.SIGKILL)  # the driver only
        driver.wait()
    finally:
        driver.kill()  # the Ray it leaves behind
    _, before = sweep_runs(client, "pg-kill")
    ended = {r.data.tags[tracking.TRIAL_TAG]: r.info.end_time for r in before if r.info.status != "RUNNING"}
    assert ended and any(r.info.status == "RUNNING" for r in before)

    resumed = sweeps(tmp_path, "resume", "pg-kill", "--tracking-uri", uri)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    parent, after = sweep_runs(client, "pg-kill")
    assert parent.info.status == "FINISHED"
    trial_ids = [r.data.tags[tracking.TRIAL_TAG] for r in after]
    assert len(trial_ids) == len(set(trial_ids)) == 6
    for run in after:
        steps = epochs_logged(client, run)
        assert steps == list(range(1, len(steps) + 1))  # no epoch lost, none logged twice
        if run.data.tags[tracking.TRIAL_TAG] in ended:  # finished before the kill: not rerun
            assert run.info.end_time == ended[run.data.tags[tracking.TRIAL_TAG]]
    mirror = optuna.load_study(study_name="pg-kill", storage=engine.storage_url(str(tmp_path / "sweep_results" /
                                                                                    "pg-kill")))
    mirrored = [t.user_attrs["tune_trial_id"] for t in mirror.trials]
    assert len(mirrored) == len(set(mirrored)) and set(trial_ids) <= set(mirrored)
