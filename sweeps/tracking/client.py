"""Connecting to MLflow, and writing params in the batches its REST API takes."""
from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import urllib.parse

from sweeps.tracking.server import GIVEN_SERVER_S, Server, TrackingError, local_server

HTTP_SETTINGS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
"""MLflow's defaults (7 retries, backoff factor 2, 120 s) retry one call for about 4 minutes,
sized for rate-limited hosted servers; a trial blocked that long per call holds its CPUs or
GPU for nothing. With these a call to a server that is down fails in seconds: a trial keeps
what the server missed and writes it once the server is back (TrialRun.log_epochs), the
driver closes runs again at the end (engine.tuner). Each is the default only: the
environment may set its own."""


CREDENTIALS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
"""Where MLflow's client reads the user and password of a basic-auth server."""
CREDENTIALS_FILE_ENV = "SWEEPS_TRACKING_CREDENTIALS"
"""Names a JSON file of CREDENTIALS that a process puts into its environment before its first
call to the server: how a Ray job's driver and trials get them without the job's description
showing the password (sweeps.cluster.jobs ships the file). A relative path is looked for in
the directories of the Python path, where Ray unpacks a job's py_modules on every node."""


def split_credentials(uri: str) -> tuple[str, dict[str, str]]:
    """URI without its user:password, and those as the environment variables MLflow reads
    (none if it has none): a URI is recorded, printed and handed to every trial."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri, {}
    bare = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return bare, dict(zip(CREDENTIALS, map(urllib.parse.unquote, (parts.username, parts.password))))


def use_credentials(uri: str) -> str:
    """URI without its user:password, which this process (and the processes it starts) then uses."""
    bare, credentials = split_credentials(uri)
    os.environ.update(credentials)
    return bare


def credentials_file_text(credentials: dict[str, str]) -> str:
    """CREDENTIALS (as split_credentials gives them) as the file CREDENTIALS_FILE_ENV names."""
    return json.dumps(credentials)


def _read_credentials_file() -> None:
    name = os.environ.get(CREDENTIALS_FILE_ENV)
    if not name:
        return
    places = [name] if os.path.isabs(name) else [os.path.join(folder, name) for folder in sys.path if folder]
    path = next((place for place in places if os.path.isfile(place)), None)
    if path is None:
        raise TrackingError(f"${CREDENTIALS_FILE_ENV}: {name} not found" +
                            ("" if os.path.isabs(name) else " in any folder of the Python path"))
    with open(path) as file:
        os.environ.update(json.load(file))


def connect(uri: str):
    # Imported here, not at the top: a command refuses bad input before MLflow (seconds) loads.
    from mlflow import MlflowClient
    _read_credentials_file()
    # MLflow prints a "View run at" link for every ended run; the sweep's summary says where.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    for key, value in HTTP_SETTINGS.items():  # read by MLflow at every request
        os.environ.setdefault(key, value)
    return MlflowClient(tracking_uri=uri)


@contextlib.contextmanager
def server_errors(uri: str):
    """MLflow's and requests' errors of calls to the server at URI, as one-line TrackingErrors."""
    import requests
    from mlflow.exceptions import MlflowException
    try:
        yield
    except (MlflowException, requests.RequestException) as err:
        lines = str(err).strip().splitlines() or [type(err).__name__]
        raise TrackingError(f"tracking server {uri}: {lines[0]}") from err


def server_call(function):
    """FUNCTION(uri, ...) raising its server's errors as TrackingError (server_errors)."""
    @functools.wraps(function)
    def call(uri: str, *args, **kwargs):
        with server_errors(uri):
            return function(uri, *args, **kwargs)
    return call


def check_access(uri: str) -> None:
    """One call that needs the credentials (MLFLOW_TRACKING_USERNAME and _PASSWORD, or
    _TOKEN): a TrackingError now, in one line, rather than in every trial."""
    with server_errors(uri):
        connect(uri).search_experiments(max_results=1)


def command_server(uri: str | None, root: str):
    """The tracking server a command works through, as a context manager: URI's, once it
    answers (GIVEN_SERVER_S) and takes the credentials (check_access: one line now, not an error
    in every later call), else a local server over ROOT/mlflow.db (local_server)."""
    if not uri:
        return local_server(root)
    server = Server(uri, timeout=GIVEN_SERVER_S)
    check_access(server.ready())
    return contextlib.nullcontext(server)


def log_params(client, run_id: str, params: dict[str, str]) -> None:
    from mlflow.entities import Param
    items = [Param(k, v) for k, v in params.items()]
    for start in range(0, len(items), 100):  # the REST API takes 100 params per batch
        client.log_batch(run_id, params=items[start:start + 100])
