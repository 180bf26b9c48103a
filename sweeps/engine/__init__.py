"""Running a sweep: the only code that imports Ray Tune and Optuna's samplers.

Owns the driver (`driver`: one per sweep folder; the MLflow server and parent run, Ray, the
summary), the trial function (`trainable`: trains one config through `models.train`, reports
every epoch to Tune, logs to the trial's MLflow child run with the model file and text that
models wrote), proposing and stopping trials (`search`: Optuna's TPE or grid behind a
ConcurrencyLimiter; `halving`: ASHA's rungs on every objective), the Tune experiment and its
driver-side callback (`tuner`), the copy of every finished trial in an Optuna storage that
Optuna's own tools open (`study`), and what the user sees while it runs (`progress`: the
live table with an ETA, the summary). Imports Ray Tune, Optuna, torch and `models`; of
sweeps `space`, `tracking` (the write side), `analysis` (the one Pareto front), `record`
(the sweep's folder) and `names`. Importing it imports Ray, which takes seconds: the CLI
imports it once input is valid.
"""
from sweeps.engine.driver import resume_sweep, run_sweep
from sweeps.engine.search import Asha, load_study, sample_config
from sweeps.engine.study import STUDY_FILE, storage_url
from sweeps.engine.trainable import TrialContext
from sweeps.engine.tuner import SweepFit, can_resume, local_capacity, local_ray

__all__ = ["Asha", "STUDY_FILE", "SweepFit", "TrialContext", "can_resume", "load_study", "local_capacity",
           "local_ray", "resume_sweep", "run_sweep", "sample_config", "storage_url"]
