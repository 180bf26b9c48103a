"""Analysing sweeps: trial table, Pareto front, export, confirm, sensitivity, report.

Against the session's real MLflow server: sweeps logged directly through tracking.py
(the layout `run` writes) where exact values are needed, and one small real sweep
(`sweeps run`, real Ray and Optuna) where the pieces must fit together.
"""
import functools
import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from mlflow import MlflowClient

from models.config import to_dict

from models.resolve import parse_config
from sweeps import cli, tracking
from sweeps.analysis import confirm, export, pareto, trial_table
from sweeps.space import load_space
from sweeps.tracking import Store
from tests.helpers import LOGGED_SPACE, log_sweep, tiny_config

# (trial, lam, lr, seed, outcome, test/nll, test/au): front for (nll min, au max) = t0, t2, t3;
# knee: scaled nll [0, 1/3, 1] and au [14/15, 8/15, 0] put t2 nearest the utopia point.
KNOWN = [("t0", 3.0, 0.5, 0, "completed", 100.0, 2), ("t1", 3.0, 0.5, 1, "completed", 100.4, 2),
         ("t2", 6.0, 0.5, 0, "completed", 101.0, 8), ("t3", 8.0, 0.2, 0, "completed", 103.0, 16),
         ("t4", 2.0, 0.9, 0, "completed", 100.3, 1), ("t5", 5.0, 0.3, 0, "pruned", None, None),
         ("t6", 7.0, 0.4, 0, "failed", None, None)]
@pytest.fixture(scope="module")
def logged(mlflow_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("logged")
    log_sweep(mlflow_server, tmp, "known", KNOWN)
    log_sweep(mlflow_server, tmp, "dead", [t for t in KNOWN if t[4] != "completed"])
    # One parameter (λ) over two seeds: NLL rises with λ; AU falls.
    lam_space = {**LOGGED_SPACE, "params": {"kl.free_bits.lam": LOGGED_SPACE["params"]["kl.free_bits.lam"]}}
    curve = [(f"c{i}", lam, 1.0, seed, "completed", 100.0 + lam + seed, 10 - lam)
             for i, (lam, seed) in enumerate((lam, seed) for lam in (2.0, 4.0, 6.0) for seed in (0, 1))]
    log_sweep(mlflow_server, tmp, "lam-curve", curve, space=lam_space)
    # Two parameters, NLL and AU driven by λ alone: λ must be the important one.
    rng = np.random.default_rng(0)
    imp = [(f"i{i}", float(lam), float(lr), 0, "completed", 100.0 + 2 * lam, round(9 - lam))
           for i, (lam, lr) in enumerate(zip(rng.uniform(1, 9, 6), rng.uniform(0.1, 1.0, 6)))]
    log_sweep(mlflow_server, tmp, "imp", imp)
    return mlflow_server


@pytest.fixture(scope="module")
def real_sweep(mlflow_server, local_ray, tmp_path_factory):
    """A 3-trial, 2-epoch `sweeps run` (some trials completed, maybe some pruned)."""
    tmp = tmp_path_factory.mktemp("real")
    fixed = tracking.flatten(tiny_config(tmp / "cache"))
    space = {"method": "fb", "fixed": {k: v for k, v in fixed.items() if k not in ("train.max_epochs", "threads")},
             "params": {"kl.free_bits.lam": {"type": "float", "low": 0.5, "high": 3.0}},
             "trials": 3, "epochs": 2, "max_concurrent": 2}
    (tmp / "space.yaml").write_text(yaml.safe_dump(space))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)
        assert cli.main(["run", "space.yaml", "--name", "real", "--tracking-uri", mlflow_server]) == 0
    return tmp


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("seed", range(6))
def test_pareto_mask_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    k = 2 + seed % 2
    values = rng.integers(0, 6, size=(40, k)).astype(float)  # small integers: many ties
    modes = [("min", "max")[i % 2] for i in range(k)]
    signed = [[v if m == "min" else -v for v, m in zip(row, modes)] for row in values]
    brute = [not any(all(b <= a for a, b in zip(signed[i], signed[j])) and signed[j] != signed[i]
                     for j in range(len(signed))) for i in range(len(signed))]
    assert pareto.pareto_mask(values, modes).tolist() == brute


@pytest.mark.e2e
def test_trial_table_has_every_trial_and_round_trips_through_parquet(logged, tmp_path, capsys):
    out = tmp_path / "t.parquet"
    code, text, _ = _cli(capsys, "trials", "known", "lam-curve", "--out", str(out), "--tracking-uri", logged)
    assert code == 0 and "t6" in text and "failed" in text
    table = pq.read_table(out)
    assert table.num_rows == len(KNOWN) + 6
    assert table.schema.names[:len(trial_table.SCHEMA)] == trial_table.SCHEMA.names
    assert table.schema.field("config.kl.free_bits.lam").type == "double"
    assert table.schema.field("config.seed").type == "int64"
    assert table.equals(trial_table.load(Store(logged), ["known", "lam-curve"]))
    rows = {r["trial_id"]: r for r in table.to_pylist()}
    assert rows["t2"]["test/nll"] == 101.0 and rows["t2"]["test/au"] == 8 and rows["t2"]["status"] == "completed"
    assert rows["t2"]["epochs"] == 2 and rows["t2"][trial_table.BEST_VAL] == 120.0 - 2 - 6.0
    assert rows["t2"]["wall_time"] == 16.0 and rows["t2"]["method"] == "fb" and rows["t2"]["dataset"] == "ptb"
    assert rows["t2"]["arithmetic"] == "arithmetic of t2" and "config.arithmetic" not in table.column_names
    assert rows["t2"]["verdict"] == "verdict of t2" and rows["t5"]["verdict"] is None  # t5 was pruned
    assert rows["t2"]["test_time"] == 8.0 and rows["t5"]["test_time"] is None
    assert (rows["t5"]["status"], rows["t6"]["status"]) == ("pruned", "failed")
    assert rows["t5"]["test/nll"] is None and rows["t5"]["epochs"] == 1
    frame = pd.read_parquet(out)
    assert list(frame.columns) == table.column_names and len(frame) == table.num_rows
    assert frame.set_index("trial_id").loc["t3", "config.train.lr"] == 0.2


@pytest.mark.e2e
def test_pareto_lists_the_front_and_logs_the_plot(logged, tmp_path, capsys):
    plot = tmp_path / "front.png"
    code, text, _ = _cli(capsys, "pareto", "known", "--out", str(plot), "--tracking-uri", logged)
    assert code == 0 and "3 of 5 completed trials" in text
    listed = {line.split()[1] for line in text.splitlines() if line.startswith("known ")}
    assert listed == {"t0", "t2", "t3"}
    assert plot.stat().st_size > 0
    parent = Store(logged).sweep("known")
    assert "analysis/front.png" in {a.path for a in MlflowClient(logged).list_artifacts(parent.run_id, "analysis")}


@pytest.mark.parametrize("criterion, expected", [("nll", ["t0"]), ("au", ["t3"]), ("knee", ["t2"]),
                                                  ("au>=8", ["t2"]), ("au>=2,kl<=3", ["t0"])])
@pytest.mark.e2e
def test_rank_by_criterion(logged, criterion, expected):
    ranked = export.rank(trial_table.load(Store(logged), ["known"]), criterion)
    assert ranked["trial_id"].to_pylist()[:len(expected)] == expected


@pytest.mark.e2e
def test_knee_ranks_front_trials_first(logged):
    assert export.rank(trial_table.load(Store(logged), ["known"]), "knee")["trial_id"].to_pylist()[:3] == ["t2", "t0", "t3"]


@pytest.mark.e2e
def test_export_top_k_writes_configs_with_provenance(logged, tmp_path, capsys):
    code, text, _ = _cli(capsys, "export-best", "known", "--criterion", "nll", "--top", "2",
                         "--out", str(tmp_path / "best.yaml"), "--tracking-uri", logged)
    assert code == 0
    first, second = tmp_path / "best-1.yaml", tmp_path / "best-2.yaml"
    assert not (tmp_path / "best.yaml").exists()
    head = [line for line in first.read_text().splitlines() if line.startswith("#")]
    run_id = trial_table.load(Store(logged), ["known"]).to_pandas().set_index("trial_id").loc["t0", "run_id"]
    assert any("trial: t0" in line for line in head) and any(run_id in line for line in head)
    assert any("test/nll=100" in line for line in head)
    assert yaml.safe_load(first.read_text())["kl"]["free_bits"]["lam"] == 3.0
    assert yaml.safe_load(second.read_text())["kl"]["free_bits"]["lam"] == 2.0  # t4, NLL 100.3


@pytest.mark.parametrize("argv, message", [
    (["pareto", "nope"], "no sweep 'nope'"),
    (["trials", "nope"], "sweeps there: "),
    (["pareto", "dead"], "no completed trials"),
    (["export-best", "dead"], "no completed trials"),
    (["pareto", "known", "--x", "val/bleu"], "metric 'val/bleu' was never logged"),
    (["export-best", "known", "--criterion", "au>=100"], "no completed trial satisfies au>=100"),
    (["sensitivity", "known", "--objective", "foo"], "metric 'test/foo' was never logged"),
])
@pytest.mark.e2e
def test_bad_requests_exit_2_with_a_clear_message(logged, capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    code, _, err = _cli(capsys, *argv, "--tracking-uri", logged)
    assert code == 2 and message in err and "Traceback" not in err
    if "sweeps there" in message:
        assert "known" in err and "dead" in err


def test_without_a_tracking_uri_asks_for_the_sweep_directory(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    code, _, err = _cli(capsys, "trials", "known")
    assert code == 2 and "mlflow.db" in err


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # its request log would go to the command's stderr
        pass


@pytest.mark.parametrize("server", ["down", "not MLflow"])
def test_a_tracking_server_that_fails_is_one_line(capsys, tmp_path, monkeypatch, server):
    if server == "down":
        monkeypatch.setattr(tracking.client, "GIVEN_SERVER_S", 1)  # refused at once; no need to wait 15 s
        uri = f"http://127.0.0.1:{tracking.free_port()}"  # nothing listens there
    else:  # another web service on the port: it answers /health, and 404 to MLflow's API
        (tmp_path / "health").write_text("OK")
        web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietFiles, directory=str(tmp_path)))
        threading.Thread(target=web.serve_forever, daemon=True).start()
        uri = f"http://127.0.0.1:{web.server_port}"
    for argv in (["trials", "known"], ["pareto", "known"], ["export-best", "known", "--out", str(tmp_path / "b.yaml")]):
        code, _, err = _cli(capsys, *argv, "--tracking-uri", uri)
        assert code == 2 and err.count("\n") == 1 and err.startswith(f"error: tracking server {uri}"), err
    if server != "down":
        web.shutdown()


def test_a_database_given_as_the_tracking_server_is_refused_at_once(capsys, tmp_path):
    # Refused before any request (not polled as a server for 15 s): the line says what to give.
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for argv in (["trials", "known"], ["compare", "a", "b"], ["export-best", "known", "--out", str(tmp_path / "b.yaml")]):
        code, _, err = _cli(capsys, *argv, "--tracking-uri", uri)
        assert code == 2 and err.count("\n") == 1 and err.startswith(f"error: tracking URI '{uri}': give a tracking "
                                                                      "server (http://HOST:PORT)"), err


@pytest.mark.e2e
def test_sensitivity_multi_objective_importances_and_slices(logged, tmp_path, capsys):
    prefix = str(tmp_path / "imp-")
    code, text, _ = _cli(capsys, "sensitivity", "imp", "--prefix", prefix, "--tracking-uri", logged)
    assert code == 0
    rows = {line.split()[0]: [float(x) for x in line.split()[1:]] for line in text.splitlines()
            if line.startswith(("kl.free_bits.lam ", "train.lr "))}
    header = next(line for line in text.splitlines() if line.startswith("parameter"))
    assert header.split()[1:] == ["fanova", "test/nll", "ped-anova", "test/nll", "fanova", "test/au", "ped-anova", "test/au"]
    lam, lr = rows["kl.free_bits.lam"], rows["train.lr"]
    assert lam[0] > lr[0] and lam[2] > lr[2]  # fANOVA, both objectives: λ drives NLL and AU
    assert lam[1] + lr[1] == pytest.approx(1, abs=0.01)  # PED-ANOVA (too few trials to rank reliably)
    assert Path(prefix + "slices.png").stat().st_size > 0 and not Path(prefix + "curve.png").exists()
    assert Path(prefix + "importances.png").stat().st_size > 0
    logged_files = {a.path for a in MlflowClient(logged).list_artifacts(Store(logged).sweep("imp").run_id, "analysis")}
    assert {"analysis/imp-slices.png", "analysis/imp-importances.png"} <= logged_files


@pytest.mark.e2e
def test_sensitivity_single_objective_one_parameter_curve_with_seed_spread(logged, tmp_path, capsys):
    prefix = str(tmp_path / "lam-")
    code, text, _ = _cli(capsys, "sensitivity", "lam-curve", "--objective", "nll", "--prefix", prefix,
                         "--tracking-uri", logged)
    assert code == 0 and "fanova test/nll" in text and "test/au" not in text
    curve = [line.split() for line in text.splitlines() if line[:3] in ("2.0", "4.0", "6.0")]
    assert curve == [["2.0", "2", "102.5", "(0.71)"], ["4.0", "2", "104.5", "(0.71)"], ["6.0", "2", "106.5", "(0.71)"]]
    assert Path(prefix + "curve.png").stat().st_size > 0


@pytest.mark.e2e
def test_report_puts_published_numbers_beside_ours(logged, tmp_path, capsys):
    out = tmp_path / "report.md"
    code, text, _ = _cli(capsys, "report", "known", "--out", str(out), "--tracking-uri", logged)
    assert code == 0 and out.read_text().strip() in text
    lines = out.read_text().splitlines()
    assert "## ptb" in lines
    ours = next(line for line in lines if line.startswith("| **fb**"))
    cells = [c.strip() for c in ours.strip("|").split("|")]
    # The best configuration (λ = 3, lr 0.5: t0 and t1) with mean (std) over its two seeds.
    assert cells[1] == "kl.free_bits.lam=3, train.lr=0.5" and cells[2] == "2"
    assert cells[3] == "100.20 (0.28)" and cells[7] == "2.00 (0.00)"
    published = lines[lines.index(ours) + 1]
    assert "Li et al. (2019) Table 1" in published and "+ FB (λ = 3)" in published and "100.5" in published
    assert "- **fb** (seed 0): verdict of t0" in lines and "- **fb** (seed 1): verdict of t1" in lines
    assert (tmp_path / "report-pareto.png").stat().st_size > 0


@pytest.mark.e2e
def test_exported_trial_reruns_to_its_metrics(real_sweep, mlflow_server, tmp_path, capsys):
    """export-best then `train --config` reproduces the trial: same seed, same numbers."""
    best = tmp_path / "best.yaml"
    code, _, _ = _cli(capsys, "export-best", "real", "--out", str(best), "--tracking-uri", mlflow_server)
    assert code == 0
    table = trial_table.completed(trial_table.load(Store(mlflow_server), ["real"]))
    trial = min(table.to_pylist(), key=lambda r: r["test/nll"])
    assert f"trial: {trial['trial_id']}" in best.read_text()
    assert cli.main(["train", "--config", str(best), "--out", str(tmp_path / "rerun")]) == 0
    test = json.loads((tmp_path / "rerun" / "metrics.json").read_text())["test"]
    for metric in ("nll", "kl", "mi", "au", "recon"):
        assert test[metric] == pytest.approx(trial[f"test/{metric}"], rel=1e-6, abs=1e-6)


@pytest.mark.e2e
def test_confirm_reruns_the_config_over_seeds_as_a_sweep(real_sweep, mlflow_server, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    best = tmp_path / "best.yaml"
    assert cli.main(["export-best", "real", "--out", str(best), "--tracking-uri", mlflow_server]) == 0
    capsys.readouterr()
    code, text, _ = _cli(capsys, "confirm", str(best), "--seeds", "2", "--name", "confirm-real",
                         "--max-concurrent", "2", "--tracking-uri", mlflow_server)
    assert code == 0 and "confirm-real: 2 of 2 seeds completed" in text
    table = trial_table.load(Store(mlflow_server), ["confirm-real"])
    assert sorted(table["config.seed"].to_pylist()) == [0, 1]  # each seed exactly once
    assert set(table["status"].to_pylist()) == {"completed"}  # a grid is never pruned
    nll = np.array(table["test/nll"].to_pylist())
    line = next(l for l in text.splitlines() if l.startswith("test/nll"))
    assert line.split()[1:3] == [f"{nll.mean():.2f}", f"({nll.std(ddof=1):.2f})"]
    # The exported trial's own seed reproduces it inside the confirm sweep as well.
    seed = yaml.safe_load(best.read_text())["seed"]
    original = min(trial_table.completed(trial_table.load(Store(mlflow_server), ["real"]))["test/nll"].to_pylist())
    rerun = dict(zip(table["config.seed"].to_pylist(), table["test/nll"].to_pylist()))[seed]
    assert rerun == pytest.approx(original, rel=1e-6)


def test_confirm_space_holds_the_config_and_grids_the_seeds(tmp_path):
    config = tiny_config(tmp_path / "cache", kl={"free_bits": {"kind": "fb", "lam": 2.5}}, methods={"bn": {"gamma": 0.6}})
    path = tmp_path / "confirm.yaml"
    path.write_text(yaml.safe_dump(confirm.confirm_space(config, [3, 4], 2, 1.0)))
    space = load_space(path)
    assert space.sampler == "grid" and space.trials == 2 and space.max_concurrent == 2
    assert [(p.key, p.choices) for p in space.params] == [("seed", (3, 4))]
    assert space.trial_config({"seed": 4}) == to_dict(parse_config({**config, "seed": 4}))
