"""Exporting the best trials: their complete configs, chosen by a criterion (`sweeps export-best`).

The file is the trial's resolved config (the `config.yaml` its run logged), so
`python -m sweeps train --config best.yaml --out DIR` reruns it as is, seed included;
a comment block on top records where it came from (sweep, trial, run id, metrics).

Criteria (only completed trials are candidates):
  METRIC[:min|max]   the best value of a metric: `nll`, `au`, `val/neg_elbo_best`, `kl:max`
                     (test/ is implied without a group; au and mi are maximised by default)
  knee               the trial of the NLL-AU Pareto front closest to the utopia point
                     (best NLL, most AU) once both axes are scaled to [0, 1] by the range of
                     the completed trials: a balanced trade-off with no weight to choose
  "au>=16,kl<10"     constraints (<, <=, >, >=, ==, comma-separated); among the trials that
                     meet all of them, the lowest test NLL
`--top K` ranks the candidates the same way (knee: front trials by distance, then the rest)
and writes best-1.yaml ... best-K.yaml beside the --out name. `--with-weights DIR` also
fetches each one's model file (models/saved.py) as DIR/best.pt (best-1.pt ...).
"""
from __future__ import annotations

import operator
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa

import models
from sweeps.analysis import trial_table
from sweeps.analysis.pareto import front, metric_spec
from sweeps.errors import UserError, redact
from sweeps.names import TEST_METRICS
from sweeps.tracking import CONFIG_ARTIFACT, Store

KNEE_AXES = (("test/nll", "min"), ("test/au", "max"))
_OPS = {"<=": operator.le, ">=": operator.ge, "==": operator.eq, "<": operator.lt, ">": operator.gt}
_CONSTRAINT = re.compile(r"^\s*([\w/.]+)\s*(<=|>=|==|<|>)\s*([-+\d.eE]+)\s*$")
SHOWN = ("test/nll", "test/ppl", "test/kl", "test/mi", "test/au", "test/recon")


def rank(table: pa.Table, criterion: str) -> pa.Table:
    """Completed trials in criterion order, best first; UserError if none qualifies."""
    if criterion == "knee":
        done, mask = front(table, KNEE_AXES)
        signed = np.column_stack([done[m].to_numpy(zero_copy_only=False) * (1 if mode == "min" else -1)
                                  for m, mode in KNEE_AXES])
        span = signed.max(0) - signed.min(0)
        scaled = (signed - signed.min(0)) / np.where(span > 0, span, 1.0)  # utopia at the origin
        order = np.lexsort((np.hypot(*scaled.T), ~mask))
        return done.take(pa.array(order))
    constraints = [c for c in criterion.split(",") if c.strip()]
    if any(_CONSTRAINT.match(c) for c in constraints):
        return _constrained(table, constraints)
    metric, mode = metric_spec(criterion)
    done = trial_table.completed(table, [metric])
    return done.sort_by([(metric, "ascending" if mode == "min" else "descending")])


def _constrained(table: pa.Table, constraints: list[str]) -> pa.Table:
    parsed = []
    for text in constraints:
        match = _CONSTRAINT.match(text)
        if not match:
            raise UserError(f"criterion {text!r}: expected METRIC OP NUMBER, e.g. 'au>=16'")
        parsed.append((metric_spec(match[1])[0], match[2], float(match[3])))
    done = trial_table.completed(table, [m for m, _, _ in parsed] + ["test/nll"])
    keep = np.ones(done.num_rows, bool)
    for metric, op, value in parsed:
        keep &= _OPS[op](done[metric].to_numpy(zero_copy_only=False), value)
    if not keep.any():
        ranges = ", ".join(f"{m} in [{done[m].to_numpy(zero_copy_only=False).min():.4g}, "
                           f"{done[m].to_numpy(zero_copy_only=False).max():.4g}]" for m, _, _ in parsed)
        raise UserError(f"no completed trial satisfies {','.join(constraints)} ({ranges})")
    return done.filter(pa.array(keep)).sort_by([("test/nll", "ascending")])


def out_paths(out: str, k: int) -> list[Path]:
    path = Path(out)
    return [path] if k == 1 else [path.with_name(f"{path.stem}-{i}{path.suffix}") for i in range(1, k + 1)]


def write_best(store: Store, ranked: pa.Table, criterion: str, out: str, top: int) -> pa.Table:
    """Write the TOP first trials' configs with their provenance; return those trials with
    a `file` column."""
    chosen = ranked.slice(0, top)
    paths = out_paths(out, chosen.num_rows)
    for i, (row, path) in enumerate(zip(chosen.to_pylist(), paths), 1):
        path.write_text(provenance(store, row, criterion, i, ranked.num_rows) + _config_text(store, row))
    return chosen.append_column("file", pa.array([str(p) for p in paths]))


def write_weights(store: Store, chosen: pa.Table, directory: str) -> pa.Table:
    """Fetch the model file of each trial `write_best` returned into DIRECTORY, named after its
    config file (best.yaml -> DIRECTORY/best.pt); return the trials with a `weights` column."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for row in chosen.to_pylist():
        target = os.path.join(directory, f"{Path(row['file']).stem}.pt")
        with tempfile.TemporaryDirectory() as tmp:
            local = store.download(row["run_id"], models.MODEL_FILE, tmp)
            if local is None:
                raise UserError(f"trial {row['trial_id']} (run {row['run_id']}) has no {models.MODEL_FILE}: it ran "
                                f"before trials logged model files, or its model was above the size limit")
            shutil.move(local, target)
        paths.append(target)
    return chosen.append_column("weights", pa.array(paths))


def _config_text(store: Store, row: dict) -> str:
    text = store.text(row["run_id"], CONFIG_ARTIFACT)
    if text is None:
        raise UserError(f"trial {row['trial_id']} (run {row['run_id']}) has no {CONFIG_ARTIFACT} artifact")
    return text


def provenance(store: Store, row: dict, criterion: str, rank_: int, candidates: int) -> str:
    metrics = ", ".join(f"{m}={row[m]:.6g}" for m in TEST_METRICS if row.get(m) is not None)
    lines = [f"Exported by: python -m sweeps {' '.join(sys.argv[1:]) or 'export-best'}",
             f"sweep: {row['sweep']}  trial: {row['trial_id']}  method: {row['method']}",
             f"mlflow run: {row['run_id']}  tracking: {store.uri}",
             f"criterion: {criterion}  rank {rank_} of {candidates} candidate trials",
             f"metrics: {metrics}",
             f"epochs: {row['epochs']}  wall time: {row['wall_time']:.1f}s" if row["wall_time"] else
             f"epochs: {row['epochs']}",
             "rerun: python -m sweeps train --config THIS_FILE --out DIR"]
    return redact("".join(f"# {line}\n" for line in lines))
