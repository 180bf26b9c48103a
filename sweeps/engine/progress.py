"""What a sweep shows its user: a live table of trials with an ETA, and the final summary.

Pure functions of `TrialRow`s, so they know nothing of Ray: the tuner turns Tune's
trials into rows (tuner.trial_rows) and calls `Progress.update` as they change.
"""
from __future__ import annotations

import csv
import io
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Sequence, TextIO

from sweeps.analysis import format_value, pareto
from sweeps.names import COMPLETED, FINISHED, OUTCOMES, PENDING, RUNNING, TRIAL_STATUS, VAL_NEG_ELBO


@dataclass
class TrialRow:
    trial_id: str
    outcome: str
    """One of OUTCOMES."""
    epoch: int = 0
    metrics: dict = field(default_factory=dict)
    """The trial's last reported result (per-epoch metrics, then test metrics at the end)."""
    params: dict = field(default_factory=dict)
    """The values Optuna sampled for it (dotted keys)."""
    testing: float | None = None
    """While it runs its test evaluation: the fraction done."""


def _params(row: TrialRow) -> str:
    return " ".join(f"{k}={format_value(v)}" for k, v in row.params.items())


def _loss(row: TrialRow, metric: str, mode: str) -> float:
    """The metric signed so that lower is better."""
    return row.metrics[metric] * (1 if mode == "min" else -1)


def best(rows: Sequence[TrialRow], metric: str, mode: str) -> TrialRow | None:
    """The completed trial with the best value of `metric`."""
    scored = [r for r in rows if r.outcome == COMPLETED and metric in r.metrics]
    return min(scored, key=lambda r: _loss(r, metric, mode), default=None)


def pareto_front(rows: Sequence[TrialRow], objectives: Sequence) -> list[TrialRow]:
    """Completed trials no other completed trial dominates (at least as good in every
    objective, better in one), best first in the first objective: the front `sweeps pareto`
    computes (analysis.pareto). Pruned trials have no test metrics and take no part."""
    done = [r for r in rows if r.outcome == COMPLETED and all(o.metric in r.metrics for o in objectives)]
    if not done:
        return []
    mask = pareto.pareto_mask([[r.metrics[o.metric] for o in objectives] for r in done], [o.mode for o in objectives])
    first = objectives[0]
    return sorted((r for r, on_front in zip(done, mask) if on_front), key=lambda r: _loss(r, first.metric, first.mode))


class Progress:
    """The live view: trial counts, best objectives so far and an ETA."""

    def __init__(self, total: int, epochs: int, objectives: Sequence, out: TextIO | None = None,
                 every: float = 30.0, top: int = 3):
        self.total, self.epochs, self.objectives = total, epochs, objectives
        # sys.stdout looked up now, not at import: tests and callers may have replaced it since.
        self.out, self.every, self.top = out or sys.stdout, every, top
        self.start = time.monotonic()
        self.start_rows: list[TrialRow] | None = None
        self.test_epochs: dict[str, float] = {}
        """Trial id -> its test evaluation's length in epochs of its training, as measured."""
        self.last_print = 0.0
        self.last_state: tuple = ()

    def observe(self, rows: Sequence[TrialRow]) -> None:
        """Measure the test evaluations running: each one's length in epochs of its trial's
        training (at k = 500 on a small corpus a test can take tens of epochs' time)."""
        for r in rows:
            epoch_time, test_time = r.metrics.get("epoch_time"), r.metrics.get("test_time")
            if r.testing and epoch_time and test_time is not None:
                self.test_epochs[r.trial_id] = test_time / r.testing / epoch_time

    def work_done(self, rows: Sequence[TrialRow]) -> float:
        """Fraction of the sweep's budget spent or no longer needed: per trial its epochs and a
        test evaluation, counted as the median test measured so far (none before the first)."""
        test = statistics.median(self.test_epochs.values()) if self.test_epochs else 0.0
        # A trial whose final result is in (`trial_status`) is done, though Tune may not have ended it yet.
        units = sum(self.epochs + test if r.outcome in FINISHED or TRIAL_STATUS in r.metrics
                    else min(r.epoch, self.epochs) + test * (r.testing or 0.0) for r in rows)
        return min(1.0, units / (self.total * (self.epochs + test)))

    def eta(self, rows: Sequence[TrialRow]) -> float | None:
        """Seconds left at this session's pace; an upper bound, as halving and early stopping
        end trials before their budget."""
        self.observe(rows)
        if self.start_rows is None:  # a resumed sweep starts with work already done
            self.start_rows = list(rows)
        done = self.work_done(rows)
        elapsed, gained = time.monotonic() - self.start, done - self.work_done(self.start_rows)
        return None if gained <= 0 else elapsed * (1.0 - done) / gained

    def status_line(self, rows: Sequence[TrialRow]) -> str:
        counts = {o: sum(r.outcome == o for r in rows) for o in OUTCOMES}
        counts[PENDING] += max(0, self.total - len(rows))  # not yet proposed by Optuna
        testing = [r for r in rows if r.outcome == RUNNING and r.testing is not None]
        parts = [f"[{_clock(time.monotonic() - self.start)}]",
                 ", ".join(f"{counts[o]} {o}" for o in OUTCOMES)]
        if testing:
            parts.append("testing " + ", ".join(f"{r.trial_id} {r.testing:.0%}" for r in testing))
        for o in self.objectives:
            top = best(rows, o.metric, o.mode)
            if top:
                parts.append(f"best {o.metric} {format_value(top.metrics[o.metric])} ({top.trial_id})")
        eta = self.eta(rows)
        parts.append(f"ETA {_clock(eta)}" if eta is not None else "ETA -")
        return " | ".join(parts)

    def table(self, rows: Sequence[TrialRow]) -> str:
        """The status line, the running trials, and the best completed ones so far."""
        first = self.objectives[0]
        ranked = sorted((r for r in rows if r.outcome == COMPLETED and first.metric in r.metrics),
                        key=lambda r: _loss(r, first.metric, first.mode))
        lines = [self.status_line(rows)]
        for row in [r for r in rows if r.outcome == RUNNING] + ranked[:self.top]:
            shown = (f"{VAL_NEG_ELBO} {format_value(row.metrics.get(VAL_NEG_ELBO))}" if row.outcome == RUNNING else
                     "  ".join(f"{o.metric} {format_value(row.metrics.get(o.metric))}" for o in self.objectives))
            if row.outcome == RUNNING and row.testing is not None:
                shown += f"  testing {row.testing:.0%}"
            lines.append(f"  {row.trial_id:<10} {row.outcome:<9} epoch {row.epoch:>3}  {shown}  {_params(row)}")
        return "\n".join(lines)

    def update(self, rows: Sequence[TrialRow]) -> None:
        """The table when a trial starts, begins its test or ends, else the status line every
        `every` seconds."""
        state = tuple((r.trial_id, r.outcome, r.testing is not None) for r in rows if r.outcome != PENDING)
        now = time.monotonic()
        if state != self.last_state:
            print(self.table(rows), file=self.out, flush=True)
        elif now - self.last_print >= self.every:
            print(self.status_line(rows), file=self.out, flush=True)
        else:
            return
        self.last_state, self.last_print = state, now


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def summary(rows: Sequence[TrialRow], objectives: Sequence, name: str, where: dict[str, str]) -> str:
    counts = ", ".join(f"{sum(r.outcome == o for r in rows)} {o}" for o in OUTCOMES if any(r.outcome == o for r in rows))
    lines = [f"Sweep {name}: {len(rows)} trials ({counts})"]
    for o in objectives:
        top = best(rows, o.metric, o.mode)
        if top:
            lines.append(f"Best {o.metric} ({o.mode}): {top.trial_id}  {format_value(top.metrics[o.metric])}  "
                         f"{_params(top)}")
    front = pareto_front(rows, objectives)
    if len(objectives) > 1 and front:
        lines.append("Pareto front (" + ", ".join(f"{o.metric} {o.mode}" for o in objectives)
                     + "; completed trials only):")
        for row in front:
            values = "  ".join(f"{o.metric} {format_value(row.metrics[o.metric])}" for o in objectives)
            lines.append(f"  {row.trial_id:<14} {values}  {_params(row)}")
    lines += [f"{label}: {value}" for label, value in where.items()]
    return "\n".join(lines)


def trials_csv(rows: Sequence[TrialRow], objectives: Sequence) -> str:
    """One line per trial: outcome, epochs, objectives and sampled values."""
    params = sorted({k for r in rows for k in r.params})
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["trial_id", "outcome", "epochs", *(o.metric for o in objectives), *params])
    for r in rows:
        writer.writerow([r.trial_id, r.outcome, r.epoch, *(r.metrics.get(o.metric, "") for o in objectives),
                         *(r.params.get(k, "") for k in params)])
    return buf.getvalue()
