"""A real PostgreSQL server for the tests and the load benchmark: Debian's server binaries
(the `postgresql` package, which `make test` installs when they are missing), a throwaway data
directory, a free port on 127.0.0.1, password authentication; stopped and removed at the end.

PostgreSQL refuses to run as root: as root (CI, the sessions here) the server runs as the
`postgres` user the Debian package creates.
"""
from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from sweeps import tracking

START_S = 120
ADMIN_PASSWORD = "test-admin-password-1"
WORKER = {"MLFLOW_TRACKING_USERNAME": "sweeps", "MLFLOW_TRACKING_PASSWORD": "worker-password-1"}
"""The nodes' MLflow user (docs/cluster.md), as every driver and trial of these tests writes."""
MISSING = ("PostgreSQL's server binaries (initdb, postgres) were not found on PATH or in /usr/lib/postgresql/*/bin: "
           "install Debian's `postgresql` package (`make test` does) or put them on PATH")


@dataclass(frozen=True)
class Postgres:
    port: int
    password: str
    """Of the `sweeps` role, which owns the database `mlflow`; given to clients as PGPASSWORD."""
    process: subprocess.Popen

    def uri(self, database: str = "mlflow") -> str:
        """The database's URI without the password, as cluster.yaml's setting is written."""
        return f"postgresql://sweeps@127.0.0.1:{self.port}/{database}"


class MissingServer(RuntimeError):
    """No PostgreSQL server binaries here."""


def binaries() -> Path:
    """The directory of initdb and postgres (PATH first, else Debian's newest version)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not versions:
        raise MissingServer(MISSING)
    return Path(versions[-1]).parent


def _server_user() -> dict:
    if os.geteuid() != 0:
        return {}
    try:
        account = pwd.getpwnam("postgres")
    except KeyError:
        raise MissingServer("running as root, and no `postgres` user to run the server as: " + MISSING) from None
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


@contextlib.contextmanager
def postgres_server() -> Iterator[Postgres]:
    """Initialise a cluster in a new directory, start it on a free 127.0.0.1 port (no Unix
    socket), create the role `sweeps` and its database `mlflow`; stop it and delete it all on exit."""
    bin_dir, user = binaries(), _server_user()
    data = Path(tempfile.mkdtemp(prefix="pg", dir="/tmp"))  # /tmp: the server's user must reach it
    superuser, password = secrets.token_hex(16), secrets.token_hex(16)
    (data / "pw").write_text(superuser)
    if user:
        for path in (data, data / "pw"):
            os.chown(path, user["user"], user["group"])
    port, process = tracking.free_port(), None
    try:
        subprocess.run([bin_dir / "initdb", "-D", data / "db", "-U", "postgres", "--auth", "scram-sha-256",
                        "--pwfile", data / "pw", "--encoding", "UTF8", "--no-instructions"],
                       check=True, capture_output=True, timeout=300, **user)
        with open(data / "server.log", "wb") as log:
            process = subprocess.Popen([bin_dir / "postgres", "-D", data / "db", "-p", str(port), "-h", "127.0.0.1",
                                        "-k", "", "-c", "max_connections=200"],
                                       stdout=log, stderr=log, start_new_session=True, **user)
        admin = _connect(port, "postgres", superuser, process, data)
        with admin:
            admin.execute(f"CREATE ROLE sweeps LOGIN PASSWORD '{password}'")
            admin.execute("CREATE DATABASE mlflow OWNER sweeps")
        yield Postgres(port, password, process)
    finally:
        if process is not None:
            process.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        shutil.rmtree(data, ignore_errors=True)


def _connect(port: int, user: str, password: str, process: subprocess.Popen, data: Path):
    """An autocommit connection once the server accepts one (CREATE DATABASE needs autocommit)."""
    import psycopg
    deadline = time.monotonic() + START_S
    while True:
        assert process.poll() is None, f"postgres exited: {(data / 'server.log').read_text()[-2000:]}"
        try:
            return psycopg.connect(host="127.0.0.1", port=port, user=user, password=password, dbname="postgres",
                                   autocommit=True, connect_timeout=5)
        except psycopg.OperationalError:
            assert time.monotonic() < deadline, f"postgres not accepting connections after {START_S}s"
            time.sleep(0.3)


def start_tracking_server(cwd: Path, artifacts: Path, port: int, postgres: Postgres | None) -> subprocess.Popen:
    """`sweeps server` with MLflow's basic-auth app in its own session, its runs and its users in
    POSTGRES's database `mlflow` (the password from PGPASSWORD, as the head's service takes it
    from head.env), or without one in SQLite files in CWD; `tracking_user` then makes the nodes'
    user. Wait for it with tracking.Server."""
    env = {**os.environ, "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
           "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD, **({"PGPASSWORD": postgres.password} if postgres else {})}
    cwd.mkdir(parents=True, exist_ok=True)
    store = postgres.uri() if postgres else f"sqlite:///{cwd / 'mlflow.db'}"
    with open(cwd / "server.log", "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "sweeps", "server", "--port", str(port), "--app-name",
                                 "basic-auth", "--backend-store-uri", store, "--artifacts-destination", str(artifacts)],
                                cwd=cwd, env=env, stdout=log, stderr=log, start_new_session=True)


def tracking_user(uri: str) -> subprocess.CompletedProcess:
    """`sweeps tracking-user` as the admin: the nodes' user WORKER, as cluster.yaml's head makes it."""
    return subprocess.run([sys.executable, "-m", "sweeps", "tracking-user", "--tracking-uri", uri],
                          env={**os.environ, **WORKER, "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD},
                          capture_output=True, text=True, timeout=600)


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Signal a process started in its own session, and whatever it left there."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
