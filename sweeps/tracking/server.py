"""The tracking server: a local one over ./mlflow.db, or the user's, reached by its URI.

All writes go through a tracking server: many trial processes writing one SQLite file
directly would lock and corrupt it, so a sweep without `--tracking-uri` starts its own
server over `./mlflow.db` and `./mlartifacts` and is the only process touching them.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from typing import Iterator

from sweeps.errors import redact

DB_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
SHUTDOWN_S = 20
RESTARTS = 3
"""How often the guard starts a local server again that died by itself (see _guard)."""
START_FAILURE_S = 30
"""A server that exits sooner than this after its start failed to start: not restarted."""
START_S = 300
"""How long a local server may take to answer: its first start over a new ./mlflow.db runs
MLflow's schema migrations, which took over 2 minutes on a busy 2-core machine."""
GIVEN_SERVER_S = 15
"""How long a command waits for a tracking server it was given (--tracking-uri) to answer:
the user runs that one, so it is up or it is not."""


AUTH_CONFIG = "mlflow-auth.ini"
"""MLflow's basic-auth config that `auth_environment` writes where the server starts, naming
its user store: MLflow reads that store's URI from a file only (MLFLOW_AUTH_CONFIG_PATH)."""
DATABASE_CHECK_S = 15


class TrackingError(RuntimeError):
    """The tracking server could not be started or reached."""


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


def is_postgres(uri: str | None) -> bool:
    """Whether URI names a PostgreSQL database (postgresql://, or with a driver: postgresql+psycopg://)."""
    return bool(uri) and uri.split(":", 1)[0].split("+", 1)[0] == "postgresql"


def check_database(uri: str) -> None:
    """Connect to the PostgreSQL database URI once (SQLAlchemy, as MLflow will): TrackingError,
    one line, if it cannot, rather than a traceback from each of the server's workers. The
    password comes from the URI or, better, from libpq's PGPASSWORD or ~/.pgpass."""
    import sqlalchemy
    engine = sqlalchemy.create_engine(uri, connect_args={"connect_timeout": DATABASE_CHECK_S})
    try:
        with engine.connect():
            pass
    except (sqlalchemy.exc.SQLAlchemyError, ImportError) as err:
        reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
        raise TrackingError(f"database {redact(uri)}: {reason}") from None
    finally:
        engine.dispose()


def auth_environment(root: str, database_uri: str) -> dict[str, str]:
    """The environment that makes MLflow's basic-auth app keep its users and permissions in
    DATABASE_URI: MLflow's own config with that `database_uri`, written to ROOT/mlflow-auth.ini
    (readable by this user only: the URI may hold a password)."""
    import configparser
    import importlib.util
    # Found, not imported: importing mlflow.server builds its whole app.
    mlflow_dir = os.path.dirname(importlib.util.find_spec("mlflow").origin)
    config = configparser.ConfigParser()
    config.read(os.path.join(mlflow_dir, "server", "auth", "basic_auth.ini"))
    config["mlflow"]["database_uri"] = database_uri.replace("%", "%%")  # MLflow reads it with interpolation
    path = os.path.join(os.path.abspath(root), AUTH_CONFIG)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
        os.fchmod(fh.fileno(), 0o600)  # also when an earlier start left it readable to others
        config.write(fh)
    return {"MLFLOW_AUTH_CONFIG_PATH": path}


def server_environment() -> dict[str, str]:
    # MLflow's server-side job runner (its own worker processes) is not used by sweeps.
    return {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tls_context() -> ssl.SSLContext | None:
    """The TLS settings MLflow's client takes from the environment, for our own calls too: a
    server behind a private CA (MLFLOW_TRACKING_SERVER_CERT_PATH) or with verification off
    (MLFLOW_TRACKING_INSECURE_TLS=true); None: the system's CAs."""
    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
        return ssl._create_unverified_context()
    bundle = os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH")
    return ssl.create_default_context(cafile=bundle) if bundle else None


class Server:
    """A tracking server: `ready()` waits until it answers and returns its URI.

    PROCESS is the guard of a server this process started (local_server); without one the
    server is the user's to run, and TIMEOUT is how long a restart of it may take."""

    def __init__(self, uri: str, process: subprocess.Popen | None = None, timeout: float = START_S):
        self.uri, self.process, self.timeout = uri, process, timeout
        self.healthy = False

    def ready(self) -> str:
        deadline, why = time.monotonic() + self.timeout, "no answer"
        while not self.healthy:
            if self.process and self.process.poll() is not None:
                raise TrackingError(f"mlflow server exited with status {self.process.returncode}; "
                                    "see .mlflow-server.log")
            if time.monotonic() > deadline:
                raise TrackingError(f"tracking server {self.uri} not healthy after {self.timeout:.0f}s ({why})")
            try:  # /health needs no credentials, also under basic auth
                with urllib.request.urlopen(f"{self.uri}/health", timeout=5, context=tls_context()) as resp:
                    self.healthy = resp.status == 200
            except OSError as err:
                why = str(getattr(err, "reason", err))
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
    stop it gracefully (it forwards SIGTERM to its uvicorn workers), or kill the group.

    A server that dies by itself after start-up is started again on its port (trials keep what
    it missed and write it when it is back), up to RESTARTS times; after that the guard stops
    the sweep as Ctrl-C would, so that Tune saves its state for `resume`. One that fails at
    start-up is not: `Server.ready` reports its exit."""
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    for restart in range(RESTARTS + 1):
        started = time.monotonic()
        server = subprocess.Popen(command)
        while server.poll() is None:
            if stopping or os.getppid() != parent_pid:  # reparented: the sweep driver died
                server.terminate()
                try:
                    server.wait(timeout=SHUTDOWN_S)
                except subprocess.TimeoutExpired:
                    os.killpg(0, signal.SIGKILL)
                return 0 if stopping else server.returncode
            time.sleep(0.3)
        if stopping or time.monotonic() - started < START_FAILURE_S:
            return server.returncode
        print(f"sweeps: mlflow server exited with status {server.returncode}"
              + (f"; restarting it ({restart + 1} of {RESTARTS})" if restart < RESTARTS else
                 f", {RESTARTS} restarts used; stopping the sweep (resume it once the server starts)"),
              file=sys.stderr, flush=True)
    os.kill(parent_pid, signal.SIGINT)
    return server.returncode
