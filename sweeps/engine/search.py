"""Proposing and stopping trials: Optuna's samplers behind Ray's OptunaSearch, and successive halving.

Optuna proposes (TPE, multi-objective over the space's objectives; or a grid), a
ConcurrencyLimiter bounds trials in flight, and successive halving (ASHA's rungs, on every
objective's validation metric: halving.py) stops hopeless trials.
"""
from __future__ import annotations

from dataclasses import dataclass

import optuna
from ray import tune
from ray.tune.schedulers import FIFOScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from sweeps.engine.halving import ObjectiveHalving, rung_metrics
from sweeps.names import COMPLETED, FAILED, TRIAL_STATUS
from sweeps.space import SearchSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)  # one INFO line per trial otherwise


@dataclass(frozen=True)
class Asha:
    grace_period: int | None = None
    """First rung, in epochs; None: a tenth of the epochs (at least 1), so KL warm-ups
    (10 epochs in He et al. App. B) are not judged on their first epoch."""
    reduction_factor: float = 3.0


def sample_config(space: SearchSpace, overrides: dict, seed: int = 0) -> dict:
    """One trial's full config, sampled outside Ray: checks `--set` values before any
    resource starts (raises ConfigError or SpaceError)."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return space.trial_config(space.define_by_run(study.ask()), overrides)


class ParetoSafeOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna COMPLETE only for trials that trained to the end.

    Ray's OptunaSearch tells a trial COMPLETE with whatever its last result holds. A trial
    halving stopped early ends on a per-epoch result: told as complete, its truncated (or
    missing) objectives would enter TPE's model and the Pareto front. It is PRUNED; a trial
    that diverged is FAIL. The trainable marks the end of training with trial_status.
    """

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """The objectives are test metrics, known only at the end: nothing to report before."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        status = (result or {}).get(TRIAL_STATUS)
        if status == COMPLETED:
            super().on_trial_complete(trial_id, result, error)
        else:  # without a result Ray tells PRUNED, or FAIL when error
            super().on_trial_complete(trial_id, None, error or status == FAILED)


def tune_config(space: SearchSpace, trials: int, max_concurrent: int, epochs: int, seed: int,
                asha: Asha) -> tune.TuneConfig:
    metrics, modes = [o.metric for o in space.objectives], [o.mode for o in space.objectives]
    searcher = ParetoSafeOptunaSearch(
        space=space.define_by_run, metric=metrics if len(metrics) > 1 else metrics[0],
        mode=modes if len(modes) > 1 else modes[0], sampler=_sampler(space, seed))
    # A grid's trials are replicates or a one-parameter curve: each trains to the end.
    scheduler = FIFOScheduler() if space.sampler == "grid" else _scheduler(space, epochs, asha)
    return tune.TuneConfig(search_alg=ConcurrencyLimiter(searcher, max_concurrent=max_concurrent),
                           scheduler=scheduler, num_samples=trials,
                           reuse_actors=True)  # a new actor re-imports torch and MLflow: seconds per trial


def _sampler(space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
    if space.sampler == "grid":
        return optuna.samplers.GridSampler({p.key: list(p.choices) for p in space.params}, seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _scheduler(space: SearchSpace, epochs: int, asha: Asha):
    """Halving on the objectives' validation metrics, with no rung at the last epoch: a trial
    that trained to the end is worth its test evaluation."""
    grace = asha.grace_period or max(1, epochs // 10)
    if epochs - 1 < grace:
        return FIFOScheduler()
    return ObjectiveHalving(rung_metrics(space.objectives), grace, asha.reduction_factor, max_t=epochs - 1)


def load_study(experiment_dir: str) -> optuna.Study:
    """The Optuna study of a sweep as its searcher last saved it in the experiment directory
    (the ConcurrencyLimiter saves its searcher's state). OptunaSearch has no public getter."""
    searcher = ParetoSafeOptunaSearch()
    searcher.restore_from_dir(experiment_dir)
    return searcher._ot_study
