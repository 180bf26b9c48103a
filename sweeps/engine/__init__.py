"""Running a sweep with Ray Tune and Optuna."""
from sweeps.engine.progress import Progress, TrialRow, pareto_front, summary, trials_csv
from sweeps.engine.tuner import (Asha, TrialContext, can_resume, fit, load_study, local_ray, sample_config)

__all__ = ["Asha", "Progress", "TrialContext", "TrialRow", "can_resume", "fit", "load_study", "local_ray",
           "pareto_front", "sample_config", "summary", "trials_csv"]
