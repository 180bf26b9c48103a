"""The sweep's parent run: one MLflow experiment per sweep, named after it, holding one
parent run (the sweep's settings, its search-space file, its summary) and, tagged as its
children, one run per trial (trial_run.py)."""
from __future__ import annotations

from sweeps.tracking.client import connect, log_params, server_call

PARENT_TAG = "mlflow.parentRunId"
TRIAL_TAG = "tune_trial_id"
SPACE_DIR = "search_space"
"""Artifact folder of the search-space file on the parent run."""
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
"""MLflow 3's UI opens an experiment without this tag in its GenAI view (traces, "evaluation
runs"); with it, on the runs table with nested trials and metric charts."""
TRAINING_VIEW = "workflowType=machine_learning"
"""MLflow 3.17's UI takes the view from its GenAI / Model training switch instead, which each
browser remembers (GenAI at first), unless the link carries this query: ours do."""


def ui_link(uri: str, experiment_id: str | None = None) -> str:
    """The UI's page of an experiment (or of all experiments) in its model-training view."""
    return f"{uri.rstrip('/')}/#/experiments{f'/{experiment_id}' if experiment_id else ''}?{TRAINING_VIEW}"


@server_call
def start_sweep_run(uri: str, name: str, params: dict, tags: dict, space_file: str) -> tuple[str, str]:
    """Create the experiment NAME and its parent run; return (experiment_id, run_id)."""
    client = connect(uri)
    experiment = client.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
    for key, value in EXPERIMENT_KIND.items():  # also on an experiment an older version created
        client.set_experiment_tag(experiment_id, key, value)
    run_id = client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
    log_params(client, run_id, {k: str(v)[:6000] for k, v in params.items()})
    client.log_artifact(run_id, space_file, SPACE_DIR)
    return experiment_id, run_id


@server_call
def reopen_run(uri: str, run_id: str) -> None:
    connect(uri).update_run(run_id, status="RUNNING")


@server_call
def finish_sweep_run(uri: str, run_id: str, status: str, files: dict[str, str], plots: tuple[str, ...] = ()) -> None:
    """Attach the sweep-level text artifacts (name -> content) and plot files, and end the parent run."""
    client = connect(uri)
    for name, text in files.items():
        client.log_text(run_id, text, name)
    for path in plots:
        client.log_artifact(run_id, path)
    client.set_terminated(run_id, status)


@server_call
def delete_lost_runs(uri: str, experiment_id: str, parent_run_id: str, trial_ids: set[str]) -> int:
    """Soft-delete child runs of trials the sweep no longer has: a driver killed between
    proposing a trial and saving its experiment state loses that trial, and resuming
    proposes a new one. Returns how many were deleted."""
    client = connect(uri)
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
                              max_results=10000)
    lost = [r for r in runs if r.data.tags.get(TRIAL_TAG) not in trial_ids]
    for run in lost:
        client.set_terminated(run.info.run_id, "KILLED")
        client.delete_run(run.info.run_id)
    return len(lost)


@server_call
def supersede_sweep_run(uri: str, experiment_id: str, old_run_id: str, new_run_id: str) -> None:
    """End the parent run of a start that saved no trial as FAILED, pointing to the run that
    starts the sweep again, and soft-delete any trial run it began (Tune will propose anew)."""
    client = connect(uri)
    delete_lost_runs(uri, experiment_id, old_run_id, set())
    client.set_tag(old_run_id, "superseded_by", new_run_id)
    client.set_terminated(old_run_id, "FAILED")


def load_runs(uri: str, experiment_name: str) -> list:
    """All runs of a sweep's experiment (the parent and its trials), for reports and tests."""
    client = connect(uri)
    experiment = client.get_experiment_by_name(experiment_name)
    return client.search_runs([experiment.experiment_id]) if experiment else []
