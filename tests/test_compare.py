"""`sweeps compare` end to end against the session's real MLflow server: sweeps of two methods
over two seeds each, logged with exact values (tests.helpers.log_sweep), compared with one
command; every number it prints is recomputed here from `sweeps trials` output."""
import re

import matplotlib.colors
import matplotlib.image
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlflow import MlflowClient

from sweeps import cli
from sweeps.analysis import compare
from sweeps.tracking import Store
from tests.helpers import LOGGED_SPACE, log_sweep

SWEEPS = ("cmp-fb-0", "cmp-fb-1", "cmp-bn-0", "cmp-bn-1")


def trials(seed: int, shift: float) -> list[tuple]:
    """Six trials: five completed (NLL rising with AU, plus noise), one pruned: 11 trial-epochs."""
    rng = np.random.default_rng(seed)
    rows = [(f"t{i}", float(lam), 0.5, seed, "completed", round(100.0 + shift + 0.6 * au + rng.normal(0, 0.8), 3),
             int(au)) for i, (lam, au) in enumerate(zip(rng.uniform(2, 9, 5), rng.integers(0, 12, 5)))]
    return rows + [("t5", 5.0, 0.5, seed, "pruned", None, None)]


@pytest.fixture(scope="module")
def logged(mlflow_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare")
    bn = {**LOGGED_SPACE, "method": "bn"}
    for seed in (0, 1):
        log_sweep(mlflow_server, tmp, f"cmp-fb-{seed}", trials(seed, 0.0))
        log_sweep(mlflow_server, tmp, f"cmp-bn-{seed}", trials(10 + seed, -1.5), space=bn)
    log_sweep(mlflow_server, tmp, "cmp-tiny", [("t0", 3.0, 0.5, 0, "completed", 99.0, 6),
                                               ("t1", 4.0, 0.5, 0, "pruned", None, None)])
    return mlflow_server


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def staircase_area(nll: np.ndarray, au: np.ndarray, ref_nll: float) -> float:
    """The hypervolume for NLL minimised and AU maximised against (ref_nll, AU 0), integrated
    over AU: on each AU interval the best NLL of the trials with at least that AU."""
    area, previous = 0.0, 0.0
    for level in sorted(set(au[au > 0])):
        area += (level - previous) * max(0.0, ref_nll - nll[au >= level].min())
        previous = level
    return area


def table_rows(text: str, first_cell: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in text.splitlines() if line.startswith(first_cell)}


def colour_pixels(png, colour: str) -> int:
    image = matplotlib.image.imread(png)[..., :3]
    return int((np.abs(image - np.array(matplotlib.colors.to_rgb(colour))).max(-1) < 0.02).sum())


@pytest.mark.e2e
def test_compare_plots_both_fronts_and_its_hypervolumes_follow_from_the_trial_tables(logged, tmp_path, capsys):
    plot = tmp_path / "cmp.png"
    code, text, err = _cli(capsys, "compare", *SWEEPS, "--group", "fb=cmp-fb-*", "--group", "bn=cmp-bn-0,cmp-bn-1",
                           "--out", str(plot), "--tracking-uri", logged)
    assert code == 0, err
    assert "Compute equalised by trial-epochs: sweeps as they ran; budgets 11 to 11 trial-epochs, within 10%" in text

    parquet = tmp_path / "t.parquet"
    assert _cli(capsys, "trials", *SWEEPS, "--out", str(parquet), "--tracking-uri", logged)[0] == 0
    table = pq.read_table(parquet).to_pandas()
    done = table[table["status"] == "completed"]
    ref_nll = done["test/nll"].max()
    assert f"Reference point: test/nll {ref_nll:.4f}, test/au 0 (worst" in text

    printed = table_rows(text, "cmp-")
    hypervolumes = {}
    for name in SWEEPS:
        mine = done[done["sweep"] == name]
        nll, au = mine["test/nll"].to_numpy(), mine["test/au"].to_numpy()
        hypervolumes[name] = staircase_area(nll, au, ref_nll)
        assert hypervolumes[name] > 0
        row = printed[name]  # sweep group trials completed trial-epochs wall front hypervolume
        assert row[2:5] == ["6", "5", "11"] and float(row[-1]) == pytest.approx(hypervolumes[name], abs=1e-4)
        # The front it lists: the trials no other trial of the sweep beats on both axes.
        front = {t for t, n, a in zip(mine["trial_id"], nll, au) if not ((nll <= n) & (au >= a) & ((nll < n) | (au > a))).any()}
        section = text.split(f"Front of {name}:", 1)[1].split("\n\n", 1)[0]
        assert {line.split()[0] for line in section.splitlines()[2:]} == front
        assert int(row[-2]) == len(front)

    ranking = table_rows(text, ("1 ", "2 "))
    groups = {row[1]: row for row in ranking.values()}
    for label in ("fb", "bn"):
        values = [hypervolumes[f"cmp-{label}-{seed}"] for seed in (0, 1)]
        mean, low, high = (float(x) for x in re.findall(r"[-+]?\d+\.\d+", " ".join(groups[label][3:6])))
        assert mean == pytest.approx(np.mean(values), abs=1e-4)
        assert min(values) - 1e-4 <= low < mean < high <= max(values) + 1e-4  # a bootstrap of the mean of two
    best = max(("fb", "bn"), key=lambda g: np.mean([hypervolumes[f"cmp-{g}-{s}"] for s in (0, 1)]))
    assert ranking["1"][1] == best and re.search(r"[-+]\d+\.\d+ \[[-+]\d+\.\d+, [-+]\d+\.\d+\]", text)

    # Both fronts are drawn, each in its group's colour (C0 the first-ranked); a legend swatch
    # alone would be a few dozen pixels.
    assert colour_pixels(plot, "C0") > 400 and colour_pixels(plot, "C1") > 400
    client = MlflowClient(logged)
    for name in SWEEPS:
        logged_files = {a.path for a in client.list_artifacts(Store(logged).sweep(name).run_id, "analysis")}
        assert {"analysis/cmp.png", "analysis/cmp.txt"} <= logged_files


@pytest.mark.e2e
def test_ranking_sweeps_of_very_different_budgets_is_refused(logged, tmp_path, capsys):
    out = ["--out", str(tmp_path / "c.png"), "--tracking-uri", logged]
    code, text, err = _cli(capsys, "compare", "cmp-fb-0", "cmp-tiny", *out)
    assert code == 2 and err.count("\n") == 1 and not text
    assert "budgets differ: cmp-fb-0 spent 11 trial-epochs, cmp-tiny 3 (3.7x; tolerance 10%): not ranked" in err
    assert not (tmp_path / "c.png").exists()
    # The same two at equal trials, with a tolerance wide enough: ranked.
    code, text, _ = _cli(capsys, "compare", "cmp-fb-0", "cmp-tiny", "--budget", "trials", "--tolerance", "2", *out)
    assert code == 0 and "budgets 2 to 6 trials, within 200%" in text
    code, text, _ = _cli(capsys, "compare", "cmp-fb-0", "cmp-tiny", "--allow-unequal", *out)
    assert code == 0 and "differ by more than 10%: ranked anyway (--allow-unequal)" in text
    # Counted to the trial nearest the smallest budget (3 trial-epochs): cmp-fb-0's first trial
    # (2), as two (4) are as far and the fewer win a tie.
    code, text, _ = _cli(capsys, "compare", "cmp-fb-0", "cmp-tiny", "--equalise", "--tolerance", "0.5", *out)
    assert code == 0 and "each sweep counted to the trial nearest the smallest budget, 3 trial-epochs" in text
    assert "budgets 2 to 3 trial-epochs, within 50%" in text
    assert table_rows(text, "cmp-fb-0")["cmp-fb-0"][2:6] == ["1", "(+5", "past", "budget)"]


def test_equalise_counts_the_first_trials_to_the_boundary_nearest_the_budget():
    trials = pa.table({"epochs": [2, 1, 4, 1], "wall_time": [1.0, None, 3.0, 1.0], "test_time": [0.5, None, None, 0.5]})
    assert compare.up_to(trials, "trial-epochs", 3)["epochs"].to_pylist() == [2, 1]
    assert compare.up_to(trials, "trial-epochs", 6).num_rows == 3  # 7 is nearer than 3, though past it
    assert compare.up_to(trials, "trial-epochs", 5).num_rows == 2  # 3 and 7 as near: the fewer
    assert compare.up_to(trials, "trial-epochs", 0.9).num_rows == 0
    assert compare.up_to(trials, "trials", 1).num_rows == 1
    assert compare.spent(trials, "wall-time") == 6.0  # unknown times count 0


@pytest.mark.e2e
@pytest.mark.parametrize("argv, message", [
    (["cmp-fb-0", "--group", "fb"], "expected LABEL=SWEEP"),
    (["cmp-fb-0", "--group", "fb=nope-*"], "matches none of the sweeps compared"),
    (["cmp-fb-0", "cmp-fb-1", "--group", "a=cmp-fb-0", "--group", "b=cmp-*"], "already in group 'a'"),
    (["cmp-fb-0", "--reference", "110"], "expected NLL,AU"),
    (["cmp-fb-0", "cmp-fb-0"], "named twice"),
    (["cmp-fb-0", "nope"], "no sweep 'nope'"),
])
def test_bad_comparisons_are_one_line(logged, capsys, tmp_path, argv, message):
    code, _, err = _cli(capsys, "compare", *argv, "--out", str(tmp_path / "c.png"), "--tracking-uri", logged)
    assert code == 2 and message in err and err.count("\n") == 1
