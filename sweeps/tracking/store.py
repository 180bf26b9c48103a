"""The read side: every read of a finished (or running) sweep, and the analysis artifacts.

The analysis commands (trials, pareto, export-best, sensitivity, report) read through this
module only, so they work against any tracking server. A sweep is the experiment named
after it; its parent run is the run without `mlflow.parentRunId`, its trials are the child
runs (sweep_run.py).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from typing import Iterator

from sweeps.errors import UserError
from sweeps.tracking.client import command_server, connect, server_errors, use_credentials
from sweeps.tracking.server import DB_FILE, TrackingError, check_uri
from sweeps.tracking.sweep_run import PARENT_TAG, SPACE_DIR, TRIAL_TAG
from sweeps.tracking.trial_run import VERDICT

ANALYSIS_DIR = "analysis"
"""Artifact folder on the parent run for everything the analysis commands write."""
_PAGE = 1000


@dataclass
class Sweep:
    name: str
    experiment_id: str
    run_id: str
    """The parent run."""
    params: dict[str, str] = field(default_factory=dict)


@dataclass
class TrialRecord:
    """One child run, as plain data."""
    run_id: str
    trial_id: str
    mlflow_status: str
    """RUNNING, FINISHED, FAILED or KILLED."""
    params: dict[str, str]
    metrics: dict[str, float]
    """Latest value of each metric."""
    start_ms: int | None
    end_ms: int | None
    verdict: str | None = None
    """A completed trial's verdict (trial_run.VERDICT)."""


@contextlib.contextmanager
def open_store(uri: str | None) -> Iterator["Store"]:
    """The store at URI (or $MLFLOW_TRACKING_URI), else a local server over ./mlflow.db,
    the store `run` writes by default, kept up for the duration of the command. A server
    that does not answer, refuses the credentials or fails a call is one line (UserError)."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri and not os.path.exists(DB_FILE):
        raise UserError(f"no ./{DB_FILE} here: run from the directory the sweep ran in, "
                        "or give --tracking-uri")
    try:
        with command_server(checked_uri(uri) if uri else None, ".") as server:
            with server_errors(server.uri):
                yield Store(server.ready())
    except TrackingError as err:
        raise UserError(str(err)) from err


def checked_uri(uri: str) -> str:
    """A tracking server's URI as given: checked (a database is refused at once, in one line,
    rather than polled as a server), with its user's credentials applied."""
    try:
        return use_credentials(check_uri(uri))
    except ValueError as err:
        raise UserError(str(err)) from err


class Store:
    def __init__(self, uri: str):
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keep tables readable
        self.uri = uri
        self.client = connect(uri)
        from mlflow.tracking._tracking_service import utils
        # MLflow caches artifact repositories by run id for the whole process, with the server
        # address resolved when first used: a run already seen through another server of this
        # process (confirm's sweep ran on its own local server) would be sent to the dead one.
        utils._artifact_repos_cache.clear()

    def sweep_names(self) -> list[str]:
        """Experiments holding a parent run, i.e. sweeps."""
        return sorted(e.name for e in self.client.search_experiments() if self._parent(e))

    def _parent(self, experiment):
        """The latest run named after the sweep that is no trial (a name may be run twice)."""
        runs = self.client.search_runs([experiment.experiment_id], max_results=_PAGE,
                                       filter_string=f"attributes.run_name = '{experiment.name}'",
                                       order_by=["attributes.start_time DESC"])
        return next((r for r in runs if PARENT_TAG not in r.data.tags), None)

    def sweep(self, name: str) -> Sweep:
        experiment = self.client.get_experiment_by_name(name)
        parent = self._parent(experiment) if experiment else None
        if parent is None:
            known = ", ".join(self.sweep_names()) or "none"
            raise UserError(f"no sweep {name!r} at {self.uri}; sweeps there: {known}")
        return Sweep(name, experiment.experiment_id, parent.info.run_id, dict(parent.data.params))

    def trials(self, sweep: Sweep) -> list[TrialRecord]:
        """Every child run of the sweep (deleted runs of lost trials excluded)."""
        out, token = [], None
        while True:
            page = self.client.search_runs(
                [sweep.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{sweep.run_id}'",
                max_results=_PAGE, page_token=token)
            out += [TrialRecord(r.info.run_id, r.data.tags.get(TRIAL_TAG, r.info.run_name),
                                r.info.status, dict(r.data.params), dict(r.data.metrics),
                                r.info.start_time, r.info.end_time, r.data.tags.get(VERDICT)) for r in page]
            token = page.token
            if not token:
                return sorted(out, key=lambda t: t.trial_id)

    def history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """(step, value) of every logged value of metric KEY, by step."""
        return sorted((m.step, m.value) for m in self.client.get_metric_history(run_id, key))

    def download(self, run_id: str, path: str, directory: str) -> str | None:
        """Download a run's artifact PATH into DIRECTORY; its local path, or None if it has none."""
        try:
            return self.client.download_artifacts(run_id, path, directory)
        except Exception:  # MLflow raises different types per artifact store for a missing file
            return None

    def text(self, run_id: str, path: str) -> str | None:
        """A text artifact of a run, or None when it has none at PATH."""
        with tempfile.TemporaryDirectory() as tmp:
            local = self.download(run_id, path, tmp)
            if local is None:
                return None
            with open(local) as fh:
                return fh.read()

    def space_file(self, sweep: Sweep, directory: str) -> str | None:
        """The search-space file the sweep ran, downloaded from its parent run into
        DIRECTORY; None if the run has none."""
        files = [f.path for f in self.client.list_artifacts(sweep.run_id, SPACE_DIR) if not f.is_dir]
        return self.client.download_artifacts(sweep.run_id, files[0], directory) if files else None

    def log_artifact(self, sweep: Sweep, local_path: str) -> str:
        """Attach a file the analysis wrote to the sweep's parent run; return its artifact path."""
        self.client.log_artifact(sweep.run_id, local_path, ANALYSIS_DIR)
        return f"{ANALYSIS_DIR}/{os.path.basename(local_path)}"
