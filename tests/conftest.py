"""Shared fixtures: one real MLflow tracking server and one local Ray per test session, a real
PostgreSQL server per module that asks; the rule that a test using any of them is marked end to end;
the C kernels' build targets that ran, said at the end."""
import sys

import pytest

from sweeps import tracking

E2E_FIXTURES = {"mlflow_server", "local_ray", "postgres"}


def pytest_collection_modifyitems(config, items):
    """A test that starts the tracking server, PostgreSQL or Ray without the e2e mark would slow `make
    test-fast` by a minute: refuse it, by name."""
    unmarked = [item.nodeid for item in items
                if E2E_FIXTURES & set(getattr(item, "fixturenames", ())) and not item.get_closest_marker("e2e")]
    if unmarked:
        raise pytest.UsageError("mark these @pytest.mark.e2e (they use a server or Ray): " + ", ".join(unmarked))


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """URI of a real `mlflow server` on a free 127.0.0.1 port over SQLite in a temp dir."""
    with tracking.local_server(str(tmp_path_factory.mktemp("mlflow"))) as server:
        yield server.ready()


@pytest.fixture(scope="module")
def postgres():
    """A real PostgreSQL server on a free 127.0.0.1 port over a throwaway directory (tests/postgres.py)."""
    from tests import postgres as pg
    try:
        pg.binaries()
        missing = None
    except pg.MissingServer as err:
        missing = str(err)
    if missing:  # a failure, not a skip: `make test` installs the server
        pytest.fail(missing, pytrace=False)
    with pg.postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def local_ray():
    """A local Ray shared by the tests; sweeps run in the test process reuse it."""
    from sweeps import engine
    with engine.local_ray():
        yield


def pytest_terminal_summary(terminalreporter):
    kernel_tests = sys.modules.get("test_kernels") or sys.modules.get("tests.test_kernels")
    if kernel_tests is not None and not kernel_tests.TARGETS:
        terminalreporter.write_line("C kernels tested for: none (no C compiler)")
    elif kernel_tests is not None and kernel_tests.TESTED_TARGETS:
        terminalreporter.write_line(f"C kernels tested for: {', '.join(sorted(kernel_tests.TESTED_TARGETS))}")
