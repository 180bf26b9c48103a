"""Connecting to MLflow, and writing params in the batches its REST API takes."""
from __future__ import annotations

import os


def connect(uri: str):
    # Imported here, not at the top: a command refuses bad input before MLflow (seconds) loads.
    from mlflow import MlflowClient
    # MLflow prints a "View run at" link for every ended run; the sweep's summary says where.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    return MlflowClient(tracking_uri=uri)


def log_params(client, run_id: str, params: dict[str, str]) -> None:
    from mlflow.entities import Param
    items = [Param(k, v) for k, v in params.items()]
    for start in range(0, len(items), 100):  # the REST API takes 100 params per batch
        client.log_batch(run_id, params=items[start:start + 100])
