"""Sweeps on a Ray cluster: a real two-node Ray cluster on this machine (token authentication
on), a real MLflow server, a sweep submitted through the CLI as a Ray Job, one node killed
mid-sweep; the tracking server command; and cluster.yaml against Ray's own launcher schema."""
import configparser
import importlib.metadata
import ipaddress
import json
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import jsonschema
import pytest
import ray.autoscaler
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.server import get_app_client
from ray.autoscaler._private.util import prepare_config, validate_config  # what `ray up` runs

from sweeps import cli, tracking
from sweeps.cluster import server
from tests.helpers import REPO, session_pids, sweep_runs, sweeps_cli

RAY = str(Path(sys.executable).with_name("ray"))
# Seed replicates of a tiny model whose epochs take about a second here.
# No --seed: the space searches the seed, and a fixed one would replace every sampled value.
SWEEP = ["tests/fixtures/cluster_space.yaml", "--trials", "4", "--epochs", "6", "--max-concurrent", "2",
         "--cpus-per-trial", "1"] + [a for kv in (
             "data.synthetic_sentences=1500", "model.enc_emb_dim=8", "model.enc_hidden=8", "model.dec_emb_dim=8",
             "model.dec_hidden=8", "model.latent_dim=2", "eval.iw_samples=5", "eval.iw_batch=5") for a in ("--set", kv)]


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")


class Node:
    """One `ray start` on this machine, in its own session and temp dir, killed by session (the
    node keeps every process it spawns there: raylet, agents, workers, job drivers): `ray stop`
    would stop every Ray on the machine, other test runs' included."""

    def __init__(self, env: dict, *options: str):
        self.temp = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
        proc = subprocess.Popen([RAY, "start", "--temp-dir", self.temp, "--num-cpus", "1", "--num-gpus", "0", "--object-store-memory", str(10 ** 8),
                                 "--dashboard-agent-listen-port", str(tracking.free_port()),
                                 "--disable-usage-stats", *options],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        self.session = proc.pid
        try:
            out, _ = proc.communicate(timeout=180)
            assert proc.returncode == 0, out
        except BaseException:  # a half-started node must not outlive the test
            proc.kill()
            self.kill()
            shutil.rmtree(self.temp, ignore_errors=True)
            raise
        raylet = next(cmdline for cmdline in map(_cmdline, session_pids(self.session)) if "raylet/raylet" in cmdline)
        self.node_id = re.search(r"--node_id=(\w+)", raylet).group(1)

    def kill(self) -> None:
        for pid in session_pids(self.session):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 30
        while session_pids(self.session) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not session_pids(self.session)


@pytest.fixture(scope="module")
def cluster():
    """A head node (1 CPU, the dashboard and Jobs API) and a second node (1 CPU)."""
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "RAY_USAGE_STATS_ENABLED": "0",
           # A job's entrypoint runs `python` from the node's PATH: this environment's.
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}
    env.pop("RAY_ADDRESS", None)
    nodes = []
    try:
        dashboard = tracking.free_port()
        nodes.append(Node(env, "--head", "--port", str(tracking.free_port()), "--include-dashboard", "true",
                          "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
                          "--ray-client-server-port", str(tracking.free_port())))
        gcs = Path(nodes[0].temp, "ray_current_cluster").read_text().strip()
        nodes.append(Node(env, "--address", gcs))
        yield env, f"http://127.0.0.1:{dashboard}", nodes
    finally:
        for node in nodes:
            node.kill()
            shutil.rmtree(node.temp, ignore_errors=True)


def sweeps(env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return sweeps_cli(*args, env=env, timeout=timeout)


def _trial_on(client: MlflowClient, experiment: str, node_id: str, timeout: float, epochs: int = 1):
    """Wait for a running trial on `node_id` that has logged `epochs` epochs (and so saved
    checkpoints)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = client.get_experiment_by_name(experiment)
        for run in client.search_runs([found.experiment_id]) if found else []:
            if (run.data.tags.get("node.id") == node_id and run.info.status == "RUNNING"
                    and len(client.get_metric_history(run.info.run_id, "val/neg_elbo")) >= epochs):
                return run
        time.sleep(0.3)
    raise AssertionError(f"no trial ran on node {node_id} within {timeout}s")


@pytest.mark.e2e
def test_submitted_sweep_spreads_over_nodes_and_survives_losing_one(cluster, mlflow_server, tmp_path):
    env, address, (head, spare) = cluster
    name = "spread"
    submit = ["submit", *SWEEP, "--name", name, "--address", address, "--storage", str(tmp_path / "shared"),
              "--tracking-uri", mlflow_server]
    done = sweeps(env, *submit)
    assert done.returncode == 0, done.stderr
    job = f"sweep-{name}-1"
    assert job in done.stdout.splitlines()

    again = sweeps(env, *submit)  # never two drivers for one sweep
    assert again.returncode == 2 and f"sweep '{name}' is already" in again.stderr and job in again.stderr

    wrong_token = sweeps({**env, "RAY_AUTH_TOKEN": secrets.token_hex(32)}, "status", job, "--address", address)
    assert wrong_token.returncode == 2 and "cannot reach the Ray cluster" in wrong_token.stderr

    client = MlflowClient(mlflow_server)
    # Two epochs in, four to go (a grid sweep has no early stopping): the trial is mid-training.
    # (A node lost just as Tune hands a reused trial process to a new trial fails that trial's
    # two calls in flight at once, and Tune 2.60 then errors the trial without a retry.)
    victim = _trial_on(client, name, spare.node_id, timeout=240, epochs=2)
    spare.kill()  # Tune must retry the trial on the head node from its checkpoint

    logs = sweeps(env, "logs", job, "--follow", "--address", address, timeout=400)
    assert logs.returncode == 0, logs.stdout[-3000:]
    assert f"Sweep {name}: 4 trials" in logs.stdout and f"job {job}: SUCCEEDED" in logs.stdout
    status = sweeps(env, "status", job, "--address", address)
    assert f"job {job}: SUCCEEDED (sweep {name})" in status.stdout

    parent, children = sweep_runs(client, name)
    assert parent.info.status == "FINISHED"
    trial_ids = [r.data.tags[tracking.TRIAL_TAG] for r in children]
    assert len(trial_ids) == len(set(trial_ids)) == 4  # one run per trial, the retried one included
    for run in children:
        # A grid trains every trial to the end: each completed, the retried one included.
        assert (run.info.status, run.data.tags["trial_status"]) == ("FINISHED", "completed"), run.data.tags
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/neg_elbo")]
        assert sorted(steps) == list(range(1, len(steps) + 1))  # no epoch lost, none logged twice
        assert run.data.tags["device"] == "cpu" and run.data.tags["node.hostname"] == socket.gethostname()
        assert run.data.tags["node.ip"]
    attempts = {r.info.run_id: r.data.tags["node.attempts"].split(",") for r in children}
    assert {n for nodes in attempts.values() for n in nodes} == {head.node_id, spare.node_id}
    moved = attempts[victim.info.run_id]
    assert moved[0] == spare.node_id and moved[-1] == head.node_id  # continued on the surviving node

    # Tune's view (the sweep's trials.csv comes from its trials) agrees, from the shared storage.
    table = Path(client.download_artifacts(parent.info.run_id, "trials.csv", str(tmp_path))).read_text()
    assert sorted(line.split(",")[0] for line in table.splitlines()[1:]) == sorted(trial_ids)
    assert json.loads((tmp_path / "shared" / name / "sweep.json").read_text())["name"] == name


@pytest.mark.e2e
def test_stopped_sweep_is_resumed_by_submitting_it_again(cluster, mlflow_server, tmp_path):
    env, address, (head, spare) = cluster
    spare.kill()  # whether or not the test above ran: the head's one CPU, one trial at a time
    name = "halt"
    # Three trials, one at a time: the stop reaches the driver while trials are left.
    submit = ["submit", *SWEEP, "--trials", "3", "--name", name, "--address", address,
              "--storage", str(tmp_path / "shared"), "--tracking-uri", mlflow_server]
    assert sweeps(env, *submit).returncode == 0
    client = MlflowClient(mlflow_server)
    first = _trial_on(client, name, head.node_id, timeout=240)
    stopped = sweeps(env, "stop", f"sweep-{name}-1", "--address", address)
    assert stopped.returncode == 0 and "stopping job" in stopped.stdout
    deadline = time.monotonic() + 120
    while "STOPPED" not in sweeps(env, "status", f"sweep-{name}-1", "--address", address).stdout:
        assert time.monotonic() < deadline, "the job did not stop"
    parent, _ = sweep_runs(client, name)
    assert parent.info.status == "KILLED"  # the driver was interrupted, not killed: it ended its run

    resumed = sweeps(env, *submit)
    assert resumed.returncode == 0 and "resumes it" in resumed.stdout and f"sweep-{name}-2" in resumed.stdout
    logs = sweeps(env, "logs", f"sweep-{name}-2", "--follow", "--address", address, timeout=400)
    assert logs.returncode == 0 and f"sweep '{name}' exists in" in logs.stdout and "resuming it" in logs.stdout, \
        logs.stdout[-3000:]
    parent, children = sweep_runs(client, name)
    assert parent.info.status == "FINISHED" and len(children) == 3
    assert first.info.run_id in {r.info.run_id for r in children}  # continued, not recreated
    for run in children:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/neg_elbo")]
        assert sorted(steps) == list(range(1, len(steps) + 1))
    finished = sweeps(env, *submit)
    assert finished.returncode == 2 and "already finished" in finished.stderr


@pytest.mark.e2e
def test_a_job_that_never_started_its_sweep_leaves_the_next_to_run_it(cluster, auth_server, tmp_path, monkeypatch):
    env, address, (head, spare) = cluster
    uri, port, _, admin_env = auth_server
    name = "unstarted"
    # A job of the sweep that died before its driver got anywhere, as one stopped while pending,
    # one whose runtime environment failed or one interrupted in its first seconds (status 130).
    died = subprocess.run([RAY, "job", "submit", "--address", address, "--submission-id", f"sweep-{name}-1",
                           "--metadata-json", json.dumps({"sweep": name}), "--no-wait", "--", "python", "-c",
                           "import sys; sys.exit(130)"], env=env, capture_output=True, text=True, timeout=300)
    deadline = time.monotonic() + 300
    while "FAILED" not in sweeps(env, "status", f"sweep-{name}-1", "--address", address).stdout:
        assert time.monotonic() < deadline, died.stdout + died.stderr
    # The nodes hold no MLflow credentials: the job's driver and trials write with those of the
    # URI, which reach them in a file shipped with the job, never in its description.
    password = "job/p@ss:" + secrets.token_hex(8)
    assert make_user(uri, admin_env, "jobs", password).returncode == 0
    with_password = f"http://jobs:{urllib.parse.quote(password, safe='')}@127.0.0.1:{port}"
    submit = ["submit", *SWEEP, "--trials", "2", "--epochs", "2", "--name", name, "--address", address,
              "--storage", str(tmp_path / "shared"), "--tracking-uri", with_password]
    again = sweeps(env, *submit)
    assert again.returncode == 0 and f"sweep-{name}-2" in again.stdout, again.stderr
    described = sweeps(env, "status", f"sweep-{name}-2", "--address", address).stdout
    assert f"--tracking-uri {uri}" in described, described
    logs = sweeps(env, "logs", f"sweep-{name}-2", "--follow", "--address", address, timeout=900)
    assert logs.returncode == 0 and f"Sweep {name}: 2 trials" in logs.stdout, logs.stdout[-3000:]
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
    client = MlflowClient(uri)
    parent, children = sweep_runs(client, name)
    assert parent.info.status == "FINISHED" and len(children) == 2
    # The driver made the sweep's experiment as the URI's user, its manager since.
    permission = get_app_client("basic-auth", tracking_uri=uri).get_user_permission(
        "jobs", "experiment", parent.info.experiment_id)
    assert permission.permission == "MANAGE"

    # What the Jobs API shows of the job (its runtime environment included) and its log.
    listed = subprocess.run([RAY, "job", "list", "--address", address], env=env, capture_output=True, text=True,
                            timeout=300)
    assert f"sweep-{name}-2" in listed.stdout and tracking.CREDENTIALS_FILE_ENV in listed.stdout, listed.stderr
    seen = {"job list": listed.stdout + listed.stderr, "job status": described, "job log": logs.stdout}
    for run in [parent, *children]:
        seen.update({f"{run.info.run_name} params": json.dumps(run.data.params),
                     f"{run.info.run_name} tags": json.dumps(run.data.tags)})
        folder = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / run.info.run_id)))
        seen.update({f"{run.info.run_name} {path.relative_to(folder)}": path.read_bytes().decode(errors="replace")
                     for path in folder.rglob("*") if path.is_file()})
    assert len([key for key in seen if "config.yaml" in key]) == 2  # every trial's artifacts were read
    assert [where for where, text in seen.items()
            if password in text or urllib.parse.quote(password, safe="") in text] == []


ADMIN_PASSWORD = "test-admin-password-1"


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    """A basic-auth tracking server run by `sweeps server` from a folder of its own: (its URI,
    port, folder, and the environment its admin's password is in)."""
    root = tmp_path_factory.mktemp("auth")
    port = tracking.free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
           "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD}
    (root / "store").mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "sweeps", "server", "--port", str(port), "--app-name", "basic-auth",
                             "--backend-store-uri", f"sqlite:///{root / 'store' / 'runs.db'}",
                             "--artifacts-destination", str(root / "artifacts")],
                            cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        yield tracking.Server(f"http://127.0.0.1:{port}", proc).ready(), port, root, env
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def make_user(uri: str, admin_env: dict, username: str, password: str) -> subprocess.CompletedProcess:
    """`sweeps tracking-user`, as the admin, for USERNAME with PASSWORD."""
    return sweeps({**admin_env, "MLFLOW_TRACKING_USERNAME": username, "MLFLOW_TRACKING_PASSWORD": password},
                  "tracking-user", "--tracking-uri", uri)


@pytest.mark.e2e
def test_tracking_server_binds_where_told_and_requires_basic_auth(auth_server, tmp_path, monkeypatch):
    uri, port, root, env = auth_server
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{uri}/api/2.0/mlflow/experiments/search?max_results=1", timeout=10)
    assert refused.value.code == 401
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("auth"))
    client.log_text(run.info.run_id, "hello", "note.txt")
    assert (root / "store" / "runs.db").exists() and list((root / "artifacts").rglob("note.txt"))
    assert (root / "basic_auth.db").exists()  # users live where the server was started
    assert _listening(port) == {"127.0.0.1"}  # the default host: loopback, nothing else

    # The nodes' user, made by the admin as cluster.yaml does; run again, it takes the new password.
    password = "worker/p@ss:2"  # characters a URI must escape
    for given, done in (("worker-password-1", "created"), (password, "updated")):
        made = make_user(uri, env, "sweeps", given)
        assert made.returncode == 0 and f"MLflow user 'sweeps' {done}" in made.stdout, made.stderr
    as_admin = make_user(uri, env, "admin", "x" * 12)
    assert as_admin.returncode == 2 and "'admin' is an admin" in as_admin.stderr
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "sweeps")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    with pytest.raises(MlflowException, match="403"):  # not an admin: no user management
        get_app_client("basic-auth", tracking_uri=uri).create_user("intruder", "intruder-password")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)

    # A sweep through the credentials: refused in one line before Ray starts when they are
    # wrong; with the right ones, given in the URI, its trial writes its epochs and test
    # metrics through them, and nothing it recorded or printed holds the password.
    tiny = ["run", *SWEEP, "--trials", "1", "--epochs", "1"]
    stored = {**env, "SWEEPS_STORAGE": str(tmp_path / "sweeps")}
    wrong = sweeps({**stored, "MLFLOW_TRACKING_USERNAME": "sweeps", "MLFLOW_TRACKING_PASSWORD": "wrong"}, *tiny,
                   "--tracking-uri", uri, "--name", "auth-wrong", timeout=900)
    assert wrong.returncode == 2 and "401" in wrong.stderr, wrong.stderr
    assert wrong.stderr.strip().splitlines()[-1].startswith(f"error: tracking server {uri}: ")
    with_password = f"http://sweeps:{urllib.parse.quote(password, safe='')}@127.0.0.1:{port}"
    right = sweeps(stored, *tiny, "--tracking-uri", with_password, "--name", "auth-sweep", timeout=1200)
    assert right.returncode == 0, right.stdout[-3000:] + right.stderr[-3000:]
    parent, (trial,) = sweep_runs(client, "auth-sweep")
    assert parent.info.status == "FINISHED" and trial.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(trial.info.run_id, "val/neg_elbo")] == [1]
    assert "test/nll" in trial.data.metrics
    assert f"--tracking-uri http://sweeps:***@127.0.0.1:{port}" in parent.data.tags["mlflow.note.content"]
    record = json.loads((tmp_path / "sweeps" / "auth-sweep" / "sweep.json").read_text())
    assert record["tracking_uri"] == uri
    summary = Path(client.download_artifacts(parent.info.run_id, "summary.txt", str(tmp_path))).read_text()
    exported = sweeps(env, "export-best", "auth-sweep", "--out", str(tmp_path / "best.yaml"),
                      "--tracking-uri", with_password)
    assert exported.returncode == 0, exported.stderr
    config = (tmp_path / "best.yaml").read_text()
    assert "--tracking-uri http://sweeps:***@" in config and f"tracking: {uri}" in config
    seen = [*parent.data.tags.values(), *parent.data.params.values(), json.dumps(record), summary,
            right.stdout, right.stderr, config]
    assert not [text for text in seen if password in text or urllib.parse.quote(password, safe="") in text]


def _listening(port: int) -> set[str]:
    """The addresses sockets listen on at PORT, IPv4 and IPv6 (/proc/net/tcp: each address
    as 32-bit words in host byte order, little-endian here)."""
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hexport = local.split(":")
            if state == "0A" and int(hexport, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                found.add(str(ipaddress.ip_address(b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4)))))
    return found


@pytest.mark.e2e
def test_exposed_server_without_auth_warns():
    assert server.is_loopback("127.0.0.1") and server.is_loopback("localhost") and server.is_loopback("::1")
    assert not server.is_loopback("0.0.0.0")
    proc = subprocess.Popen([sys.executable, "-m", "sweeps", "server", "--host", "0.0.0.0", "--port",
                             str(tracking.free_port())], cwd=tempfile.gettempdir(),
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert "MLflow tracking server on http://0.0.0.0" in proc.stdout.readline()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    warning = proc.stderr.read()
    assert warning.startswith("warning: --host 0.0.0.0 exposes") and "--app-name basic-auth" in warning


def _launcher_checks(config: dict) -> dict:
    """Ray's JSON schema for cluster configs, then the launcher's own preparation and checks."""
    schema = json.loads(Path(ray.autoscaler.__file__).with_name("ray-schema.json").read_text())
    jsonschema.validate(config, schema)
    prepared = prepare_config(config)
    validate_config(prepared)
    return prepared


def _commands(config: dict, key: str) -> list[list[str]]:
    return [shlex.split(c) for c in config[key]]


def _sweeps_command(words: list[str]) -> list[str] | None:
    """The arguments after `python -m sweeps` in a shell command, if it runs one."""
    for i in range(len(words) - 2):
        if words[i:i + 3] == ["python", "-m", "sweeps"]:
            rest = words[i + 3:]
            return rest[:next((j for j, w in enumerate(rest) if w in (">", "&", "&&", ";")), len(rest))]
    return None


def _unit(path: Path) -> configparser.ConfigParser:
    """A systemd unit file, section -> key -> value (the syntax is an INI file's)."""
    unit = configparser.ConfigParser(interpolation=None)
    unit.optionxform = str  # systemd's keys are case-sensitive
    unit.read_string(path.read_text())
    return unit


def _env_block(docs: str, path: str) -> set[str]:
    """The variables of the env file PATH as docs/cluster.md lists them (a block opening with `# PATH`)."""
    block = re.search(rf"```bash\n# {re.escape(path)}\n(.*?)```", docs, re.S).group(1)
    return set(re.findall(r"^([A-Z_]+)=", block, re.M))


def test_cluster_yaml_is_a_valid_launcher_config_for_this_project():
    text = (REPO / "cluster.yaml").read_text()
    config = yaml.safe_load(text)
    prepared = _launcher_checks(config)
    assert config["cluster_name"] and config["provider"]["type"] and config["auth"]["ssh_user"]
    head, types = config["head_node_type"], config["available_node_types"]
    gpu = [t for name, t in types.items() if name != head and t["resources"].get("GPU")]
    assert len(gpu) == 1 and gpu[0]["max_workers"] >= 1 and gpu[0]["min_workers"] >= 0
    assert types[head]["resources"] == {"CPU": 0}  # trials go to the workers
    assert prepared["max_workers"] >= gpu[0]["max_workers"]

    # The project travels to every node and is installed from there, at the pinned versions.
    mount = next(remote for remote, local in config["file_mounts"].items() if local == ".")
    assert f"pip install -q -c {mount}/constraints.txt -e {mount}" in config["setup_commands"]
    assert all("/mnt/shared" in c for c in config["setup_commands"][:1])  # shared storage first
    compiler = next(i for i, c in enumerate(config["setup_commands"]) if "command -v cc" in c)
    assert "apt-get install -y -qq gcc" in config["setup_commands"][compiler]  # the C kernels build on every node

    # The dashboard runs whatever job it is sent: loopback only, reached through an SSH tunnel.
    started = [words for words in _commands(config, "head_start_ray_commands") if "start" in words]
    ray_head = next(words for words in started if "--head" in words)
    hosts = [w.split("=", 1)[1] for w in ray_head if w.startswith("--dashboard-host=")]
    assert hosts == ["127.0.0.1"]
    assert "SWEEPS_STORAGE=/mnt/shared/sweep_results" in ray_head and any(
        w.startswith("MLFLOW_TRACKING_URI=") for w in ray_head)
    assert any("ray start --address=$RAY_HEAD_IP" in c for c in config["worker_start_ray_commands"])

    # Secrets: every node gets cluster.env (file_mounts reach the workers); the head's own are
    # made on the head, in the file its tracking server reads, and no command of a worker reads it.
    unit = _unit(REPO / "sweeps" / "cluster" / "sweeps-mlflow.service")
    head_env = unit["Service"]["EnvironmentFile"]
    assert head_env == "/etc/sweeps/head.env"
    assert not [m for m in config["file_mounts"].items() if head_env in m[0] or "head.env" in m[1]]
    made = next(c for c in config["head_setup_commands"] if f"tee {head_env}" in c)
    assert f"chmod 600 {head_env}" in made and "install -d -m 700 /etc/sweeps" in made
    assert set(re.findall(r"(MLFLOW_\w+)=", made)) == {
        "MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"}
    assert not [c for c in config["setup_commands"] + config["worker_start_ray_commands"] if "head.env" in c]
    docs = (REPO / "docs" / "cluster.md").read_text()
    assert _env_block(docs, "~/.config/sweeps/cluster.env") == {
        "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "SHARED_NFS",
        "SWEEPS_TRACKING_DB"}
    assert "~/.config/sweeps/cluster.env" in config["file_mounts"]
    # Nothing secret in the file itself: tokens and passwords are only read from those files.
    assert not re.search(r"(TOKEN|PASSWORD|SECRET_KEY)\w*\s*[=:]\s*[^\s${]", text)
    assert all("cluster.env" in c for c in config["head_start_ray_commands"] + config["worker_start_ray_commands"]
               if "ray start" in c or "python -m sweeps" in c)

    # The tracking server: a systemd service installed on the head, restarted when it fails,
    # basic auth, its database the one setting SWEEPS_TRACKING_DB of cluster.env (PostgreSQL outside
    # the cluster), else SQLite on the head's disk (never NFS); its artifacts shared.
    assert any("sweeps/cluster/sweeps-mlflow.service" in c and "systemctl enable sweeps-mlflow" in c
               for c in config["head_setup_commands"])
    assert "sudo systemctl restart sweeps-mlflow" in config["head_start_ray_commands"]
    service = unit["Service"]
    assert service["Restart"] == "on-failure" and unit["Install"]["WantedBy"] == "multi-user.target"
    executable, *words = shlex.split(service["ExecStart"])
    assert executable == "@PYTHON@" and words[:2] == ["-m", "sweeps"]
    parsed = cli.build_parser().parse_args(words[2:])
    assert parsed.command == "server" and parsed.app_name == "basic-auth" and not server.is_loopback(parsed.host)
    assert parsed.backend_store_uri == "${SWEEPS_TRACKING_DB}"  # systemd fills it in from head.env
    database = next(c for c in config["head_setup_commands"] if "SWEEPS_TRACKING_DB=" in c)
    assert f'"SWEEPS_TRACKING_DB=${{SWEEPS_TRACKING_DB:-sqlite:////var/lib/sweeps/mlflow.db}}" | sudo tee -a {head_env}' \
        in database and "PGPASSWORD" in database  # its password only the head holds
    assert service["StateDirectory"] == "sweeps" and service["WorkingDirectory"] == "/var/lib/sweeps"
    assert parsed.artifacts_destination.startswith("/mnt/shared/")
    # ... and, as its admin, the nodes' user: every `python -m sweeps ...` is a command the CLI accepts.
    commands = [args for args in map(_sweeps_command, _commands(config, "head_start_ray_commands")) if args]
    assert [cli.build_parser().parse_args(args).command for args in commands] == ["tracking-user"]


def test_tracking_server_unit_passes_systemds_own_check(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here")
    text = (REPO / "sweeps" / "cluster" / "sweeps-mlflow.service").read_text()
    # As cluster.yaml's head setup fills it in: this user, this Python.
    unit = tmp_path / "sweeps-mlflow.service"
    unit.write_text(text.replace("@USER@", pwd.getpwuid(os.getuid()).pw_name).replace("@PYTHON@", sys.executable))
    checked = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0 and not checked.stderr.strip(), checked.stderr  # it warns of unknown keys


def test_constraints_pin_every_dependency_to_the_version_tested_here():
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            pin = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)", line)
            assert pin, f"constraints.txt: {line!r} is not an exact pin"
            pins[canonicalize_name(pin[1])] = Version(pin[2])
    assert all(not version.local for version in pins.values())  # torch==2.13.0, not 2.13.0+cpu
    for text in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]:
        wanted = Requirement(text)
        pinned = pins.get(canonicalize_name(wanted.name))
        assert pinned and wanted.specifier.contains(pinned), f"{text}: pinned {pinned}"
    # What the cluster installs is what these tests run on.
    for name, pinned in pins.items():
        assert Version(importlib.metadata.version(name)).public == pinned.public, name


def test_documented_on_premises_config_is_valid():
    docs = (REPO / "docs" / "cluster.md").read_text()
    local = [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", docs, re.S)]
    local = [c for c in local if c.get("provider", {}).get("type") == "local"]
    assert len(local) == 1
    prepared = _launcher_checks(local[0])
    assert prepared["max_workers"] == len(local[0]["provider"]["worker_ips"])
    started = [_sweeps_command(words) for words in _commands(local[0], "head_start_ray_commands")]
    cli.build_parser().parse_args(next(args for args in started if args))
    cluster = yaml.safe_load((REPO / "cluster.yaml").read_text())
    assert local[0]["head_setup_commands"] == cluster["head_setup_commands"]
    assert local[0]["setup_commands"] == cluster["setup_commands"][1:]  # NFS already mounted there
    assert "--dashboard-host=127.0.0.1" in " ".join(local[0]["head_start_ray_commands"])
