"""The sweep's Optuna study in an Optuna storage, for Optuna's own tools.

`sweep_results/NAME/optuna.db` (SQLite, Optuna's RDB storage) holds one study named after
the sweep, with every finished trial: its sampled values and their distributions, its state
(COMPLETE with the objectives' values, PRUNED when halving stopped it, FAIL) and its Tune trial
id as the user attribute `tune_trial_id`. `optuna.load_study(study_name=NAME,
storage="sqlite:///sweep_results/NAME/optuna.db")` and `optuna-dashboard` open it without
this project.

It is a mirror, written by the driver as each trial ends. The searcher keeps its own
in-memory study, which Tune pickles with the experiment, so `resume` restores the searcher
exactly: a storage shared with the searcher would also hold the trials that a killed driver
had asked for but not saved, and a grid would skip their points. A trial is written once: an
end reported again after a resume is recognised by its Tune trial id.
"""
from __future__ import annotations

import os

import optuna
from optuna.trial import TrialState

from sweeps.names import COMPLETED, FAILED, PRUNED
from sweeps.space import SearchSpace

STUDY_FILE = "optuna.db"
TRIAL_ID_ATTR = "tune_trial_id"
STATES = {COMPLETED: TrialState.COMPLETE, PRUNED: TrialState.PRUNED, FAILED: TrialState.FAIL}
"""A finished trial's outcome (tuner.outcome) as Optuna's state, as the searcher tells it."""


def storage_url(experiment_dir: str) -> str:
    return f"sqlite:///{os.path.abspath(os.path.join(experiment_dir, STUDY_FILE))}"


class StudyMirror:
    def __init__(self, experiment_dir: str, name: str, space: SearchSpace):
        self.space = space
        self.study = optuna.create_study(
            storage=storage_url(experiment_dir), study_name=name, load_if_exists=True,
            directions=["minimize" if o.mode == "min" else "maximize" for o in space.objectives])
        self.recorded = {t.user_attrs.get(TRIAL_ID_ATTR) for t in self.study.get_trials(deepcopy=False)}

    def record(self, trial_id: str, sampled: dict, outcome: str, result: dict) -> None:
        """Add a finished trial (outcome completed, pruned or failed) unless it is there already."""
        if trial_id in self.recorded or outcome not in STATES:
            return
        replay = optuna.trial.FixedTrial(sampled)  # the distributions the searcher sampled from
        self.space.define_by_run(replay)
        values = [result.get(o.metric) for o in self.space.objectives]
        state = STATES[outcome]
        if state == TrialState.COMPLETE and None in values:
            state = TrialState.FAIL  # an objective the final result lacks: nothing to compare
        self.study.add_trial(optuna.trial.create_trial(
            state=state, values=values if state == TrialState.COMPLETE else None, params=replay.params,
            distributions=replay.distributions,
            user_attrs={TRIAL_ID_ATTR: trial_id, "epochs": int(result.get("epoch", 0))}))
        self.recorded.add(trial_id)
