"""The experiments: their shared pieces (configs from presets with per-method changes, the
tables, the results files' header), and each entry point run end to end on a tiny budget."""
import sys
from pathlib import Path

import pytest

from experiments import (bn_epsilon, collapse_table, pooling_dispersion, posterior_mean_space, ptb_table, report,
                         scale_nll, trace_run)
from experiments.ptb_table import data_setting
from experiments.report import REPO, header, method_table, seed_table
from experiments.runs import method_config
from models import parse_config

FIXTURES = Path(__file__).parent / "fixtures"


def test_method_config_layers_base_preset_lengths_then_overrides():
    base = {"train": {"max_epochs": 3}, "model": {"latent_dim": 4}}
    cfg = parse_config(method_config("scale", base, anneal_epochs=2.0,
                                     overrides={"scale": {"methods": {"scale": {"f_epo": 2}}}, "bn": {"x": 1}}))
    assert (cfg.train.max_epochs, cfg.model.latent_dim) == (3, 4)
    assert cfg.kl.anneal == "linear" and cfg.kl.epochs == 2.0  # shortened warm-up
    assert cfg.methods["scale"].f_epo == 2 and cfg.methods["scale"].des_std == 0.7  # override on the preset
    untouched = parse_config(method_config("pretrain-fb", base))
    assert untouched.kl.epochs == 10.0 and untouched.methods["pretrain"].epochs == 10  # paper lengths kept


def test_tables_show_every_seed_and_the_ratio_to_the_vae():
    def run(seed, nll, au, wall):
        return {"seed": seed, "test": {"nll": nll, "kl": 1.0, "mi": 0.5, "mi_batch": 0.25, "au": au},
                "wall_time": wall, "epochs": 2, "history": [], "verdict": f"verdict {seed}"}
    runs = {"vae": [run(0, 40.0, 0, 10.0), run(1, 41.0, 0, 20.0)],
            "bn": [run(0, 42.0, 8, 30.0), run(1, 43.0, 7, 20.0)]}
    table = method_table(runs)
    assert "| bn | 42.50 (0.71) |" in table and "2.00 (1.41)" in table  # wall ratios 3.0 and 1.0 per seed
    rows = seed_table(runs).splitlines()
    assert len(rows) == 2 + 4 and "| bn | 1 | 43.00 | 1.00 | 0.50 | 0.25 | 7 | 2 | 20 | verdict 1 |" in rows
    older = {"vae": [{**r, "test": {k: v for k, v in r["test"].items() if k != "mi_batch"}} for r in runs["vae"]]}
    assert "| vae | 40.50 (0.71) | 1.00 (0.00) | 0.50 (0.00) | – |" in method_table(older)  # runs kept from before it


def test_results_files_name_folders_relative_to_the_repository_not_this_machines(monkeypatch):
    line = data_setting(REPO.parent / "shared" / "data" / "ptb", max_vocab=2000)  # ptb_table's default
    assert "`../shared/data/ptb`" in line and str(REPO.parent) not in line
    monkeypatch.setattr(sys, "argv", [str(REPO / "experiments" / "ptb_table.py"),
                                      "--data-dir", str(REPO / "data" / "ptb"), "--workers", "2"])
    assert "`python -m experiments.ptb_table --data-dir data/ptb --workers 2`" in header("PTB", [])


def test_joint_vs_single_spaces_are_the_joint_entries_each_alone(tmp_path):
    import yaml

    from experiments.joint_vs_single import JOINT, spaces, untried
    from sweeps.space import load_space
    joint = yaml.safe_load(JOINT.read_text())
    budget = {"trials": 4, "epochs": 2}
    built = spaces(joint, ["fb", "scale-fb"], {"model.latent_dim": 4}, budget)
    assert list(built) == ["joint", "fb", "scale-fb"] and list(built["joint"]["methods"]) == ["fb", "scale-fb"]
    loaded = {}
    for label, space in built.items():
        (tmp_path / f"{label}.yaml").write_text(yaml.safe_dump(space))
        loaded[label] = load_space(tmp_path / f"{label}.yaml")
    # The same parameters as the entry inside the joint space: shared ones, then the entry's own.
    assert {p.key for p in loaded["scale-fb"].params} == {"model.pooling", "train.enc_lr_ratio", "kl.free_bits.lam",
                                                          "methods.scale.des_std"}
    assert loaded["scale-fb"].method == "scale" and loaded["scale-fb"].fixed["kl.free_bits.kind"] == "fb"
    assert loaded["fb"].fixed["model.latent_dim"] == 4 and loaded["joint"].trials == loaded["fb"].trials == 4
    assert untried({"method": "scale-fb"}, joint) == "scale + kl.free_bits.kind=fb"
    assert untried({"method": "scale", "config.model.pooling": "max"}, joint) == "scale with max pooling"
    assert untried({"method": "bn", "config.model.pooling": "max"}, joint) == "bn with max pooling"
    # Long et al. ran pooling under KL annealing (and without it in Table 3): tried.
    assert untried({"method": "anneal", "config.model.pooling": "mean"}, joint) == ""
    assert untried({"method": "bn", "config.model.pooling": "last"}, joint) == ""
    assert untried({"method": "scale-fb", "config.model.pooling": "mean"}, joint) == \
        "scale + kl.free_bits.kind=fb with mean pooling"


def test_joint_vs_single_reports_hypervolumes_and_the_untried_configurations_on_the_front(tmp_path, monkeypatch):
    # The report from stored sweeps (--report-only's path), on trials whose hypervolumes are known:
    # the worst NLL, 100, is the reference, so a point (NLL, AU) dominates (100 - NLL) x AU.
    import yaml

    from experiments import joint_vs_single
    monkeypatch.setattr(joint_vs_single, "RESULTS", tmp_path)
    joint = yaml.safe_load(joint_vs_single.JOINT.read_text())
    sweeps = {("joint", 0): [("scale", "max", 90.0, 4), ("fb", "last", 100.0, 0)],  # 10 x 4
              ("joint", 1): [("bn", "last", 95.0, 4), ("fb", "last", 100.0, 0)],  # 5 x 4
              ("fb", 0): [("fb", "last", 100.0, 0), ("fb", "last", 98.0, 0)],  # no unit active: 0
              ("fb", 1): [("fb", "last", 99.0, 0), ("fb", "mean", 97.0, 0)],
              ("scale", 0): [("scale", "last", 92.0, 2), ("scale", "last", 99.0, 0)],  # 8 x 2
              ("scale", 1): [("scale", "last", 94.0, 2), ("scale", "mean", 96.0, 1)]}  # 6 x 2
    records = [{"name": f"{label}-s{seed}", "label": label, "seed": seed,
                "trials": [{"trial_id": f"{label}{seed}{i}", "status": "completed", "method": method, "epochs": 2,
                            "wall_time": 1.0, "test_time": 0.5, "test/nll": nll, "test/au": au,
                            "config.model.pooling": pooling} for i, (method, pooling, nll, au) in enumerate(trials)]}
               for (label, seed), trials in sweeps.items()]
    section = joint_vs_single.corpus_section("synthetic", records, joint, tolerance=0.25)
    rows = {}  # the hypervolume table's: the first row of each sweep
    for line in section.splitlines():
        if line.startswith("| "):
            rows.setdefault(line.split("|")[1].strip(), line.split("|")[2:5])
    assert rows["joint"] == [" 40.00 / 20.00 ", " 30.00 ", " [20.00, 40.00] "]
    assert rows["scale"] == [" 16.00 / 12.00 ", " 14.00 ", " [12.00, 16.00] "]
    assert rows["fb"][:2] == [" 0.00 / 0.00 ", " 0.00 "]
    assert "reference point NLL 100.00" in section and "trial nearest 4 trial-epochs" in section
    assert "| best single-method sweep (scale, chosen after the fact) | +16.00 |" in section
    # The combined front is joint seed 0's Scale-VAE with max pooling: a combination no paper tried.
    assert "Combined front of all sweeps' counted trials: 1 trials (joint 1, fb 0, scale 0)" in section
    assert "| joint | 0 | scale | 90.00 | 4 | model.pooling=max" in section and "| scale with max pooling |" in section
    assert (tmp_path / "joint_vs_single_synthetic.png").stat().st_size > 0


# Every entry point behind docs/results, on a budget of seconds: a script that no longer runs
# against today's `models` fails here, not when someone next needs its table. Their files go
# to a temporary folder, not docs/results.
@pytest.fixture
def results(tmp_path, monkeypatch):
    for module in (report, bn_epsilon, collapse_table, pooling_dispersion, posterior_mean_space, ptb_table):
        monkeypatch.setattr(module, "RESULTS", tmp_path)
    return tmp_path


SYNTHETIC = ["--sentences", "200", "--epochs", "1", "--iw-samples", "2"]


@pytest.mark.e2e
def test_collapse_table_runs_every_method_asked_for(results):
    # aggressive and scale: the two methods the experiment changes (OVERRIDES), and the line it
    # adds for aggressive training.
    collapse_table.main([*SYNTHETIC, "--latent-dim", "2", "--methods", "vae,aggressive,scale", "--seeds", "1"])
    table = (results / "collapse_table.md").read_text()
    assert all(f"| {method} |" in table for method in ("vae", "aggressive", "scale"))
    assert "Aggressive mode" in table and (results / "collapse_table_nll_au.png").stat().st_size > 0
    assert len((results / "collapse_table_runs.jsonl").read_text().splitlines()) == 3


@pytest.mark.e2e
def test_ptb_table_splits_the_test_file_and_runs_the_language_model_too(results, tmp_path):
    data = tmp_path / "ptb"
    data.mkdir()
    sentences = (FIXTURES / "tiny.train.txt").read_text()
    (data / "ptb.valid.txt").write_text(sentences)
    (data / "ptb.test.txt").write_text(sentences * 2)  # each half: validation, test
    ptb_table.main(["--data-dir", str(data), "--split-dir", str(tmp_path / "split"), "--methods", "lm,vae",
                    "--seeds", "1", "--epochs", "1", "--iw-samples", "2", "--emb", "8", "--hidden", "8",
                    "--latent-dim", "2", "--max-vocab", "50"])
    table = (results / "ptb_table.md").read_text()
    assert "| lm |" in table and "| vae |" in table and (results / "ptb_table_nll_au.png").stat().st_size > 0
    halves = [(tmp_path / "split" / f"ptb.test.{half}-half.txt").read_text() for half in ("first", "second")]
    assert "".join(halves) == (data / "ptb.test.txt").read_text()


@pytest.mark.e2e
def test_pooling_dispersion_traces_both_encoders(results):
    pooling_dispersion.main(SYNTHETIC)
    table = (results / "pooling_dispersion.md").read_text()
    # The initial model and one validation for each encoder.
    assert sum(line.startswith(("| last (anneal)", "| max pooling")) for line in table.splitlines()) == 4
    assert (results / "pooling_dispersion.png").stat().st_size > 0


@pytest.mark.e2e
def test_posterior_mean_space_snapshots_both_methods(results):
    posterior_mean_space.main([*SYNTHETIC, "--every", "5", "--snapshots", "5", "--points", "20",
                               "--grid=-2,2,0.5"])
    table = (results / "posterior_mean_space.md").read_text()
    assert "| vae |" in table and "| aggressive |" in table and "Aggressive mode stayed on" in table
    assert (results / "posterior_mean_space.png").stat().st_size > 0


@pytest.mark.e2e
def test_trace_run_prints_a_line_per_validation_and_the_test(capsys):
    trace_run.main(["vae", "--epochs", "2", "--set", "data.synthetic_sentences=200"])
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in out[:2]] == [["validation", "1"], ["validation", "2"]]
    assert out[-1].startswith("test (50 IW samples): NLL")


@pytest.mark.e2e
def test_scale_nll_scores_both_readings_at_every_k(results):
    scale_nll.main(["--sentences", "200", "--epochs", "1", "--test-sentences", "10", "--samples", "2,4"])
    table = (results / "scale_nll.md").read_text()
    assert [line.split("|")[1:3] for line in table.splitlines() if line.startswith(("| trained", "| decoder"))] == [
        [" trained ", " 2 "], [" trained ", " 4 "], [" decoder ", " 2 "], [" decoder ", " 4 "]]


@pytest.mark.e2e
def test_bn_epsilon_runs_both_epsilons_and_plots_the_spread(results):
    bn_epsilon.main(["--corpora", "synthetic", "--conditions", "published,gamma-0.3", "--seeds", "1", "--epochs", "1",
                     "--sentences", "200", "--hidden", "8", "--iw-samples", "2"])
    rows = [line for line in (results / "bn_epsilon.md").read_text().splitlines() if line.startswith("| synthetic")]
    assert [row.split("|")[2:4] for row in rows] == [[" published ", " 1e-05 "], [" published ", " 1e-12 "],
                                                     [" gamma-0.3 ", " 1e-05 "], [" gamma-0.3 ", " 1e-12 "]]
    assert (results / "bn_epsilon_spread.png").stat().st_size > 0
