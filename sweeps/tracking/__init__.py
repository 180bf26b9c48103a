"""MLflow: the only code of the project that imports it.

Owns the tracking server (`server`: a local one over ./mlflow.db, or the user's, over SQLite
or PostgreSQL; every write goes through a server, never to the database directly) and its users (`users`: the one a
cluster's sweeps write with), the write side the engine uses
(`sweep_run`: a sweep's experiment and parent run; `trial_run`: each trial's child run)
and the read side the analysis uses (`store`). MLflow is imported lazily, inside the
calls, so that a command refuses bad input before it loads. Imports PyYAML and
matplotlib besides; of sweeps only `errors` and `names`.
"""
from sweeps.tracking.client import (CREDENTIALS, CREDENTIALS_FILE_ENV, check_access, command_server,
                                    credentials_file_text, split_credentials, use_credentials)
from sweeps.tracking.server import (ARTIFACTS_DIR, AUTH_CONFIG, DB_FILE, Server, TrackingError, auth_environment,
                                    check_database, check_uri, free_port, is_postgres, local_server, server_command,
                                    server_environment)
from sweeps.tracking.store import Store, Sweep, TrialRecord, checked_uri, open_store
from sweeps.tracking.sweep_run import (EXPERIMENT_KIND, PARENT_TAG, TRIAL_TAG, delete_lost_runs, finish_sweep_run,
                                       load_runs, reopen_run, start_sweep_run, supersede_sweep_run, ui_link)
from sweeps.tracking.trial_run import (ARITHMETIC, CONFIG_ARTIFACT, DIVERGED, OUTCOME_STATUS, VERDICT, TrialRun,
                                       close_trial_run, flatten)
from sweeps.tracking.users import set_user

__all__ = [
    # the server
    "ARTIFACTS_DIR", "AUTH_CONFIG", "DB_FILE", "Server", "TrackingError", "auth_environment", "check_database",
    "check_uri", "free_port", "is_postgres", "local_server", "server_command", "server_environment",
    "check_access", "command_server", "CREDENTIALS", "CREDENTIALS_FILE_ENV", "credentials_file_text",
    "split_credentials", "use_credentials",
    "set_user",
    # the write side
    "EXPERIMENT_KIND", "PARENT_TAG", "TRIAL_TAG", "delete_lost_runs", "finish_sweep_run", "load_runs",
    "reopen_run", "start_sweep_run", "supersede_sweep_run", "ui_link", "ARITHMETIC", "CONFIG_ARTIFACT", "DIVERGED",
    "OUTCOME_STATUS", "VERDICT", "TrialRun", "close_trial_run", "flatten",
    # the read side
    "Store", "Sweep", "TrialRecord", "checked_uri", "open_store",
]
