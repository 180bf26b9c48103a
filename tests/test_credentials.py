"""Credentials are never shown, logged or recorded: `redact` on the text that leaves a command,
and a tracking URI's user:password moved into the environment MLflow reads."""
import pytest

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
])
def test_redact_hides_passwords_and_secret_values(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize("text", [
    "http://127.0.0.1:5000/#/experiments/3?workflowType=machine_learning",
    "postgresql://sweeps@db/mlflow",  # a user without a password: nothing secret
    "python -m sweeps run fb.yaml --set kl.free_bits.lam=5 --name fb-1",
    "MLFLOW_TRACKING_USERNAME=sweeps MLFLOW_TRACKING_URI=http://10.0.0.5:5000",
])
def test_redact_leaves_text_without_secrets_alone(text):
    assert redact(text) == text


def test_a_uris_credentials_become_mlflows_environment_variables():
    bare, env = split_credentials("http://sweeps:p%40ss%2Fw%3A@10.0.0.5:5000/prefix")
    assert bare == "http://10.0.0.5:5000/prefix"
    assert env == {"MLFLOW_TRACKING_USERNAME": "sweeps", "MLFLOW_TRACKING_PASSWORD": "p@ss/w:"}
    assert split_credentials("http://10.0.0.5:5000") == ("http://10.0.0.5:5000", {})
    assert split_credentials("http://sweeps@10.0.0.5:5000") == ("http://sweeps@10.0.0.5:5000", {})
