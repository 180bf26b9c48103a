"""The trial table: one row per trial of one or more sweeps (`sweeps trials` writes it as Parquet).

Schema (stable; columns in this order, then the config columns sorted by name):

    sweep              string   sweep (MLflow experiment) name
    trial_id           string   Ray Tune trial id
    run_id             string   MLflow child run id
    status             string   completed | pruned | failed | running
    method             string   method preset; in a joint space the sampled `method`
    dataset            string   `synthetic` or the corpus prefix's base name (e.g. `yahoo`)
    epochs             int64    epochs trained (last step of val/neg_elbo; 0 if none)
    wall_time          double   seconds of training (models' own clock; for unfinished
                                trials, the MLflow run's duration)
    val/neg_elbo_best  double   best validation -ELBO over the epochs
    test/nll test/ppl test/neg_elbo test/recon test/kl test/mi test/au
                       double   final test metrics (null unless completed)
    val/neg_elbo val/recon val/kl val/mi val/au
                       double   validation metrics of the last epoch trained
    test_time          double   seconds of the test evaluation (null unless completed, and for
                                trials logged before it was recorded)
    arithmetic         string   which arithmetic the trial ran with (models/kernels/: the C
                                kernels and their build, or torch's path; torch's CPU instruction
                                set or GPU); null for trials logged before it was recorded
    verdict            string   a completed trial's one line on whether its latent is active and
                                why (models/diagnostics.py: "collapsed: AU 0/32, ...; bn:
                                normalisation defeated ..."); null otherwise
    config.<key>       int64 | double | bool | string
                                every flattened config value (`config.kl.free_bits.lam`,
                                `config.seed`); typed by its values across the table, null
                                where a trial's config lacks the key (other methods)

Several sweeps combine into one table (their config columns united). Parquet written by
pyarrow reads back unchanged in pandas, polars and DuckDB.
"""
from __future__ import annotations

import os
from collections import Counter
from typing import Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sweeps.errors import UserError
from sweeps.names import COMPLETED, RUNNING, TEST_METRICS, VAL_METRICS, VAL_NEG_ELBO
from sweeps.space import METHOD
from sweeps.tracking import ARITHMETIC, OUTCOME_STATUS, VERDICT, Store, Sweep, TrialRecord

CONFIG = "config."
BEST_VAL = VAL_NEG_ELBO + "_best"
SCHEMA = pa.schema([("sweep", pa.string()), ("trial_id", pa.string()), ("run_id", pa.string()),
                    ("status", pa.string()), ("method", pa.string()), ("dataset", pa.string()),
                    ("epochs", pa.int64()), ("wall_time", pa.float64()), (BEST_VAL, pa.float64())]
                   + [(m, pa.float64()) for m in TEST_METRICS + VAL_METRICS + ("test_time",)]
                   + [(ARITHMETIC, pa.string()), (VERDICT, pa.string())])
"""The fixed leading columns; config.* columns follow."""
_OUTCOME = {status: outcome for outcome, status in OUTCOME_STATUS.items()}


def load(store: Store, names: Sequence[str]) -> pa.Table:
    """The trial table of the named sweeps (UserError for an unknown name)."""
    rows = []
    for name in names:
        sweep = store.sweep(name)
        rows += [_row(store, sweep, trial) for trial in store.trials(sweep)]
    keys = sorted({k for r in rows for k in r if k.startswith(CONFIG)})
    columns = {f.name: pa.array([r.get(f.name) for r in rows], f.type) for f in SCHEMA}
    columns.update({k: _typed([r.get(k) for r in rows]) for k in keys})
    return pa.table(columns)


def save(table: pa.Table, path: str) -> None:
    """The table as Parquet, readable unchanged by pandas, polars and DuckDB."""
    pq.write_table(table, path)


def completed(table: pa.Table, metrics: Sequence[str] = ()) -> pa.Table:
    """Completed trials that logged METRICS; UserError if there are none, or a metric was
    never logged by any trial."""
    done = table.filter(pc.equal(table["status"], COMPLETED))
    if done.num_rows == 0:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(Counter(table["status"].to_pylist()).items()))
        sweeps = ", ".join(sorted(set(table["sweep"].to_pylist())))
        raise UserError(f"{sweeps}: no completed trials ({counts or 'no trials'})")
    for metric in metrics:
        if metric not in table.column_names or table[metric].null_count == table.num_rows:
            known = [c for c in table.column_names if "/" in c and table[c].null_count < table.num_rows]
            raise UserError(f"metric {metric!r} was never logged; logged: {', '.join(known)}")
        done = done.filter(pc.is_valid(done[metric]))
    if done.num_rows == 0:
        raise UserError(f"no completed trial logged all of {', '.join(metrics)}")
    return done


def _row(store: Store, sweep: Sweep, trial: TrialRecord) -> dict:
    config = {k: _value(v) for k, v in trial.params.items() if k not in (METHOD, ARITHMETIC)}
    val_history = store.history(trial.run_id, VAL_NEG_ELBO)
    wall = trial.metrics.get("wall_time")
    if wall is None and trial.start_ms and trial.end_ms:
        wall = (trial.end_ms - trial.start_ms) / 1000.0
    return {"sweep": sweep.name, "trial_id": trial.trial_id, "run_id": trial.run_id,
            "status": _OUTCOME.get(trial.mlflow_status, RUNNING),
            "method": trial.params.get(METHOD, "unknown"), "dataset": _dataset(config),
            "epochs": max((step for step, _ in val_history), default=0), "wall_time": wall,
            BEST_VAL: min((value for _, value in val_history), default=None),
            **{m: trial.metrics.get(m) for m in TEST_METRICS + VAL_METRICS + ("test_time",)},
            ARITHMETIC: trial.params.get(ARITHMETIC), VERDICT: trial.verdict,
            **{CONFIG + k: v for k, v in config.items()}}


def _dataset(config: dict) -> str:
    source = config.get("data.train") or config.get("data.name") or "synthetic"
    base = os.path.basename(str(source))
    return (base[: -len(".train.txt")] if base.endswith(".train.txt") else base).lower()


def _value(text: str):
    """A param back to its value: MLflow stores str(value) (see tracking.flatten)."""
    if text in ("True", "False"):
        return text == "True"
    if text == "None":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _typed(values: list) -> pa.Array:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pa.array(values, pa.bool_())
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pa.array(values, pa.int64())
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    return pa.array([None if v is None else str(v) for v in values], pa.string())


def format_rows(table: pa.Table, columns: Sequence[str], title: str | None = None) -> str:
    """A plain-text table of the given columns (floats to 4 significant digits)."""
    columns = [c for c in columns if c in table.column_names]
    cells = [[format_value(v) for v in table[c].to_pylist()] for c in columns]
    widths = [max([len(c)] + [len(v) for v in col]) for c, col in zip(columns, cells)]
    lines = [title] if title else []
    lines.append("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    lines += ["  ".join(col[i].ljust(w) for col, w in zip(cells, widths)) for i in range(table.num_rows)]
    return "\n".join(lines)


def format_value(value) -> str:
    """A value as tables and summaries show it: floats to 4 significant digits, None as -."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)
