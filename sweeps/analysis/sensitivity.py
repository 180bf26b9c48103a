"""Sensitivity: which parameters matter, for each objective (`sweeps sensitivity`).

The completed trials are replayed into an in-memory Optuna study per objective (so it
works for any sweep on any tracking server, not just where Tune's state lives), with the
distributions of the search space the sweep logged on its parent run; without one, every
config value that varies between trials counts as a parameter over its observed range.
Reports fANOVA and PED-ANOVA importances (tabled and as bars), plots each objective against
each parameter (slices), and for a one-parameter study (seed aside) the curve of each
objective against the parameter with its spread over seeds, as Li et al. Table 10 (λ) or
Song et al. Table 3 (des_std) tabulate.
"""
from __future__ import annotations

import tempfile
import warnings
from collections import defaultdict

import numpy as np
import optuna
import pyarrow as pa
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from sweeps.analysis import trial_table
from sweeps.space import METHOD, SearchSpace, SpaceError, load_space
from sweeps.tracking import Store, Sweep

SEED = "seed"
EVALUATORS = {"fanova": lambda: optuna.importance.FanovaImportanceEvaluator(seed=0),
              "ped-anova": lambda: optuna.importance.PedAnovaImportanceEvaluator()}

optuna.logging.set_verbosity(optuna.logging.WARNING)  # one INFO line per replayed study otherwise


def logged_space(store: Store, sweep: Sweep) -> SearchSpace | None:
    """The space the sweep ran, from its parent run; None if absent or no longer valid
    (e.g. a parameter `models` has since dropped): then `distributions` infers them."""
    with tempfile.TemporaryDirectory() as tmp:
        path = store.space_file(sweep, tmp)
        try:
            return load_space(path) if path else None
        except SpaceError:
            return None


def distributions(space: SearchSpace | None, done: pa.Table) -> dict[str, optuna.distributions.BaseDistribution]:
    """Parameter name (dotted config key, or `method`) -> distribution; parameters whose
    values fall outside the space (fixed by --set) are left out."""
    out: dict = {}
    if space is not None:
        if space.methods:
            out[METHOD] = CategoricalDistribution(list(space.methods))
        for param in space.params + tuple(p for b in space.methods.values() for p in b.params):
            out[param.key] = (CategoricalDistribution(list(param.choices)) if param.type == "categorical" else
                              IntDistribution(param.low, param.high, log=param.log, step=param.step or 1)
                              if param.type == "int" else
                              FloatDistribution(param.low, param.high, log=param.log, step=param.step))
        return {k: d for k, d in out.items() if all(_contains(d, v) for v in _values(done, k) if v is not None)}
    for column in done.column_names:
        values = {v for v in done[column].to_pylist() if v is not None}
        if column.startswith(trial_table.CONFIG) and len(values) > 1:
            key = column[len(trial_table.CONFIG):]
            out[key] = (CategoricalDistribution(sorted(values, key=str)) if not _numeric(done[column].type) else
                        IntDistribution(min(values), max(values)) if pa.types.is_integer(done[column].type)
                        else FloatDistribution(min(values), max(values)))
    return out


def _numeric(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind)


def _values(done: pa.Table, key: str) -> list:
    column = "method" if key == METHOD else trial_table.CONFIG + key
    return done[column].to_pylist() if column in done.column_names else [None] * done.num_rows


def _contains(dist, value) -> bool:
    try:
        return dist._contains(dist.to_internal_repr(value))
    except (ValueError, TypeError):
        return False


def study_for(done: pa.Table, dists: dict, metric: str, mode: str) -> optuna.Study:
    """An in-memory study holding each completed trial with its parameters and METRIC."""
    study = optuna.create_study(direction="minimize" if mode == "min" else "maximize")
    columns = {k: _values(done, k) for k in dists}
    for i, value in enumerate(done[metric].to_pylist()):
        params = {k: columns[k][i] for k in dists if columns[k][i] is not None}
        study.add_trial(optuna.trial.create_trial(value=value, params=params,
                                                  distributions={k: dists[k] for k in params}))
    return study


def scores(done: pa.Table, dists: dict, specs: list) -> dict[str, dict[str, dict[str, float]]]:
    """Objective -> evaluator -> parameter -> importance, for each (metric, mode) of SPECS."""
    return {metric: importances(study_for(done, dists, metric, mode)) for metric, mode in specs}


def importances(study: optuna.Study) -> dict[str, dict[str, float]]:
    """Evaluator name -> parameter -> importance (fANOVA uses the parameters every trial has);
    empty when the objective is the same in every trial (nothing to attribute)."""
    if len({t.value for t in study.trials}) < 2:
        return {name: {} for name in EVALUATORS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # too few trials: Optuna warns and returns equal importances
        return {name: optuna.importance.get_param_importances(study, evaluator=make())
                for name, make in EVALUATORS.items()}


def table_text(scores: dict, params: list[str], n: int) -> str:
    heads = [f"{ev} {metric}" for metric in scores for ev in EVALUATORS]
    rows = [[p] + [f"{scores[m][ev].get(p, float('nan')):.3f}" for m in scores for ev in EVALUATORS] for p in params]
    widths = [max(len(r[i]) for r in [["parameter"] + heads] + rows) for i in range(len(heads) + 1)]
    lines = [f"Importances over {n} completed trials "
             " (nan: a parameter not in every trial, for fANOVA, or an objective that never varied)"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in [["parameter"] + heads] + rows]
    return "\n".join(lines)


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def importance_plot(scores_: dict, path: str) -> str:
    """One panel per objective: each parameter's importance under each evaluator, as bars."""
    plt = _plt()
    params = sorted({p for by_evaluator in scores_.values() for found in by_evaluator.values() for p in found})
    rows, width = np.arange(len(params)), 0.8 / len(EVALUATORS)
    fig, axes = plt.subplots(1, len(scores_), figsize=(4.5 * len(scores_), 1.5 + 0.45 * len(params)),
                             squeeze=False, constrained_layout=True)
    for ax, (metric, by_evaluator) in zip(axes[0], scores_.items()):
        for i, name in enumerate(EVALUATORS):
            ax.barh(rows + i * width, [by_evaluator[name].get(p, 0.0) for p in params], height=width, label=name)
        ax.set_yticks(rows + 0.4 - width / 2, params, fontsize=8)
        if not any(by_evaluator.values()):
            ax.text(0.5, 0.5, "the same in every trial", transform=ax.transAxes, ha="center", fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_xlabel("importance")
        ax.set_title(metric, fontsize=9)
    axes[0, 0].legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def slices(done: pa.Table, dists: dict, specs: list, path: str) -> str:
    """One panel per (objective, parameter): the objective against the parameter's values."""
    plt = _plt()
    fig, axes = plt.subplots(len(specs), len(dists), figsize=(3.2 * len(dists), 2.8 * len(specs)),
                             squeeze=False, constrained_layout=True)
    for row, (metric, mode) in enumerate(specs):
        ys = np.array(done[metric].to_pylist(), float)
        for col, (key, dist) in enumerate(dists.items()):
            ax, xs = axes[row, col], _values(done, key)
            pick = [i for i, v in enumerate(xs) if v is not None]
            if isinstance(dist, CategoricalDistribution):
                labels = [str(c) for c in dist.choices]
                ax.scatter([labels.index(str(xs[i])) for i in pick], ys[pick], alpha=0.6)
                ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=7)
            else:
                ax.scatter([xs[i] for i in pick], ys[pick], alpha=0.6)
                ax.set_xscale("log" if dist.log else "linear")
            ax.set_xlabel(key, fontsize=8)
            ax.set_ylabel(f"{metric} ({mode})", fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def curve(done: pa.Table, key: str, specs: list, path: str) -> tuple[str, str]:
    """Mean and standard deviation over the trials (seeds) at each value of KEY."""
    xs = _values(done, key)
    groups: dict = defaultdict(list)
    for i, x in enumerate(xs):
        groups[x].append(i)
    values = sorted(groups, key=lambda v: (isinstance(v, str), v))
    plt = _plt()
    fig, axes = plt.subplots(1, len(specs), figsize=(4.2 * len(specs), 3.2), squeeze=False, constrained_layout=True)
    lines = [f"{key}  n  " + "  ".join(f"{m} mean (std)" for m, _ in specs)]
    stats = {}
    for ax, (metric, _) in zip(axes[0], specs):
        ys = np.array(done[metric].to_pylist(), float)
        stats[metric] = [(ys[groups[v]].mean(), ys[groups[v]].std(ddof=1) if len(groups[v]) > 1 else 0.0)
                         for v in values]
        means, stds = map(np.array, zip(*stats[metric]))
        pos = values if all(isinstance(v, (int, float)) for v in values) else list(range(len(values)))
        ax.errorbar(pos, means, yerr=stds, marker="o", capsize=3)
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
    for j, v in enumerate(values):
        lines.append(f"{v}  {len(groups[v])}  " + "  ".join(
            f"{stats[m][j][0]:.4g} ({stats[m][j][1]:.2g})" for m, _ in specs))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return "\n".join(lines), path
