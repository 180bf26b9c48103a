"""Credentials are never shown, logged or recorded: `redact` on the text that leaves a command,
and a tracking URI's user:password moved into the environment MLflow reads; the TLS settings
MLflow's client takes from the environment hold for our own calls too."""
import http.server
import os
import ssl
import subprocess
import threading

import pytest

from sweeps import tracking
from sweeps.errors import redact
from sweeps.tracking import split_credentials


@pytest.mark.parametrize("text, expected", [
    ("python -m sweeps run fb.yaml --tracking-uri http://sweeps:hunter2@10.0.0.5:5000 --name fb",
     "python -m sweeps run fb.yaml --tracking-uri http://sweeps:***@10.0.0.5:5000 --name fb"),
    ("--tracking-uri=https://sweeps:p%40ss@mlflow.lab.example/ ok", "--tracking-uri=https://sweeps:***@mlflow.lab.example/ ok"),
    # Written unescaped, '@', ':' and '/' in a password are still the password's.
    ("http://sweeps:p@s:s/w@10.0.0.5:5000/api", "http://sweeps:***@10.0.0.5:5000/api"),
    ("tracking URI 'file://sweeps:hunter2@db/x': give a tracking server", "tracking URI 'file://sweeps:***@db/x': give a tracking server"),
    ("tracking server http://a:b@h:5000: 401 Unauthorized", "tracking server http://a:***@h:5000: 401 Unauthorized"),
    ("MLFLOW_TRACKING_PASSWORD=hunter2 python -m sweeps run", "MLFLOW_TRACKING_PASSWORD=*** python -m sweeps run"),
    ("export RAY_AUTH_TOKEN=\"ab cd\" MLFLOW_FLASK_SERVER_SECRET_KEY='x y'",
     "export RAY_AUTH_TOKEN=*** MLFLOW_FLASK_SERVER_SECRET_KEY=***"),
    ('{"tracking_uri": "http://sweeps:hunter2@10.0.0.5:5000", "seed": 0}',
     '{"tracking_uri": "http://sweeps:***@10.0.0.5:5000", "seed": 0}'),
    # JSON (a job's runtime environment as the Jobs API returns it) and a Python mapping's repr.
    ('{"env_vars": {"MLFLOW_TRACKING_PASSWORD": "hun\\"ter 2", "MLFLOW_TRACKING_USERNAME": "sweeps"}}',
     '{"env_vars": {"MLFLOW_TRACKING_PASSWORD": "***", "MLFLOW_TRACKING_USERNAME": "sweeps"}}'),
    ("{'db_password': 'hunter 2', 'Token' : 'abc'}", "{'db_password': '***', 'Token' : '***'}"),
    # Lower case, as some tools name their variables.
    ("mlflow_tracking_password=hunter2 python -m sweeps run", "mlflow_tracking_password=*** python -m sweeps run"),
])
def test_redact_hides_passwords_and_secret_values(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize("text", [
    "http://127.0.0.1:5000/#/experiments/3?workflowType=machine_learning",
    "postgresql://sweeps@db/mlflow",  # a user without a password: nothing secret
    "python -m sweeps run fb.yaml --set kl.free_bits.lam=5 --name fb-1",
    "MLFLOW_TRACKING_USERNAME=sweeps MLFLOW_TRACKING_URI=http://10.0.0.5:5000",
    '{"MLFLOW_TRACKING_USERNAME": "sweeps", "SWEEPS_TRACKING_CREDENTIALS": "sweeps_job_secrets/mlflow.json"}',
    "python -m sweeps run fb.yaml --set data.token_budget=5",  # a dotted config key, not a secret
])
def test_redact_leaves_text_without_secrets_alone(text):
    assert redact(text) == text


def test_a_uris_credentials_become_mlflows_environment_variables():
    bare, env = split_credentials("http://sweeps:p%40ss%2Fw%3A@10.0.0.5:5000/prefix")
    assert bare == "http://10.0.0.5:5000/prefix"
    assert env == {"MLFLOW_TRACKING_USERNAME": "sweeps", "MLFLOW_TRACKING_PASSWORD": "p@ss/w:"}
    assert split_credentials("http://10.0.0.5:5000") == ("http://10.0.0.5:5000", {})
    assert split_credentials("http://sweeps@10.0.0.5:5000") == ("http://sweeps@10.0.0.5:5000", {})


def test_a_credentials_file_on_the_python_path_becomes_mlflows_environment_variables(tmp_path, monkeypatch):
    """As a Ray job's driver and workers find the file its py_modules shipped (cluster.jobs)."""
    (tmp_path / "shipped").mkdir()
    credentials = {"MLFLOW_TRACKING_USERNAME": "sweeps", "MLFLOW_TRACKING_PASSWORD": "p@ss w"}
    (tmp_path / "shipped" / "mlflow.json").write_text(tracking.credentials_file_text(credentials))
    for key in tracking.CREDENTIALS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv(tracking.CREDENTIALS_FILE_ENV, "shipped/mlflow.json")
    with pytest.raises(tracking.TrackingError, match="shipped/mlflow.json not found in any folder of the Python path"):
        tracking.client.connect("http://127.0.0.1:5000")
    monkeypatch.syspath_prepend(str(tmp_path))
    tracking.client.connect("http://127.0.0.1:5000")
    assert {key: os.environ[key] for key in tracking.CREDENTIALS} == credentials


@pytest.fixture
def https_health(tmp_path):
    """A real HTTPS endpoint answering /health, with a self-signed certificate for 127.0.0.1."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Health)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{httpd.server_address[1]}", cert
    httpd.shutdown()


def test_health_wait_trusts_the_ca_mlflow_is_told_of(https_health, monkeypatch):
    uri, cert = https_health
    monkeypatch.delenv("MLFLOW_TRACKING_SERVER_CERT_PATH", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_INSECURE_TLS", raising=False)
    with pytest.raises(tracking.TrackingError, match="CERTIFICATE_VERIFY_FAILED"):
        tracking.Server(uri, timeout=2).ready()
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(cert))  # a private CA, as for MLflow's client
    assert tracking.Server(uri, timeout=10).ready() == uri
    monkeypatch.delenv("MLFLOW_TRACKING_SERVER_CERT_PATH")
    monkeypatch.setenv("MLFLOW_TRACKING_INSECURE_TLS", "true")
    assert tracking.Server(uri, timeout=10).ready() == uri
