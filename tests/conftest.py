"""Shared fixtures: one real MLflow tracking server and one local Ray per test session."""
import pytest

from sweeps import tracking


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """URI of a real `mlflow server` on a free 127.0.0.1 port over SQLite in a temp dir."""
    with tracking.local_server(str(tmp_path_factory.mktemp("mlflow"))) as server:
        yield server.ready()


@pytest.fixture(scope="session")
def local_ray():
    """A local Ray shared by the tests; sweeps run in the test process reuse it."""
    from sweeps import engine
    with engine.local_ray():
        yield
