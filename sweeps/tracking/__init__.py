"""MLflow."""
from sweeps.tracking.store import Store, Sweep, TrialRecord, open_store
from sweeps.tracking.trial_run import (ARTIFACTS_DIR, DB_FILE, DIVERGED, OUTCOME_STATUS, PARENT_TAG, TRIAL_TAG,
                                       Server, TrackingError, TrialRun, check_uri, close_trial_run,
                                       delete_lost_runs, finish_sweep_run, flatten, free_port, load_runs,
                                       local_server, reopen_run, server_command, server_environment,
                                       start_sweep_run)

__all__ = ["ARTIFACTS_DIR", "DB_FILE", "DIVERGED", "OUTCOME_STATUS", "PARENT_TAG", "TRIAL_TAG", "Server",
           "Store", "Sweep", "TrackingError", "TrialRecord", "TrialRun", "check_uri", "close_trial_run",
           "delete_lost_runs", "finish_sweep_run", "flatten", "free_port", "load_runs", "local_server",
           "open_store", "reopen_run", "server_command", "server_environment", "start_sweep_run"]
