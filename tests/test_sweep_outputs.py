"""What a sweep leaves a researcher, through the real components: one tiny sweep (real Ray,
Optuna and MLflow server), then the MLflow UI's view of it, each trial's model file and text,
the commands that use them (the CLI as a subprocess) and the Optuna study in its storage."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

import models
from sweeps import cli, engine, tracking
from tests.helpers import LR, REPO, artifacts, sweep_runs, sweeps_cli, write_space

pytestmark = pytest.mark.e2e
NAME = "outputs"


@pytest.fixture(scope="module")
def swept(tmp_path_factory, mlflow_server, local_ray):
    """The sweep's directory: 3 trials of 1 epoch, one at a time (all complete: no halving rung)."""
    tmp = tmp_path_factory.mktemp("outputs")
    space = write_space(tmp / "outputs.yaml", LR, trials=3, epochs=1, max_concurrent=1)
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        assert cli.main(["run", space, "--name", NAME, "--seed", "0", "--tracking-uri", mlflow_server]) == 0
    finally:
        os.chdir(cwd)
    return tmp


def test_the_ui_opens_the_sweep_as_model_training_with_its_plots(swept, mlflow_server):
    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name(NAME)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    parent, children = sweep_runs(client, NAME)
    assert {"pareto.png", "importances.png", "summary.txt"} <= artifacts(client, parent)
    summary = Path(client.download_artifacts(parent.info.run_id, "summary.txt", str(swept))).read_text()
    assert f"optuna-dashboard {engine.storage_url(str(swept / 'sweep_results' / NAME))}" in summary
    # MLflow 3.17's UI takes its view from the link: the one printed opens the runs table.
    link = tracking.ui_link(mlflow_server, experiment.experiment_id)
    assert f"Browse: {link}" in summary
    assert link.endswith(f"/#/experiments/{experiment.experiment_id}?workflowType=machine_learning")
    assert len(children) == 3 and all(r.data.tags["trial_status"] == "completed" for r in children)


def test_each_completed_trial_logs_its_model_file_samples_and_reconstructions(swept, mlflow_server):
    client = MlflowClient(mlflow_server)
    for run in sweep_runs(client, NAME)[1]:
        assert {models.MODEL_FILE, models.SAMPLES_FILE, models.RECONSTRUCTIONS_FILE} <= artifacts(client, run)
        assert "checkpoint.pt" not in artifacts(client, run)
        recon = Path(client.download_artifacts(run.info.run_id, models.RECONSTRUCTIONS_FILE, str(swept))).read_text()
        assert "distinct reconstructions:" in recon and recon.count(" input ") == 20


def test_the_best_trials_model_is_exported_evaluated_sampled_and_trained_from(swept, mlflow_server):
    client = MlflowClient(mlflow_server)
    export = sweeps_cli("export-best", NAME, "--out", "best.yaml", "--with-weights", "weights",
                        "--tracking-uri", mlflow_server, cwd=swept)
    assert export.returncode == 0, export.stderr
    weights = swept / "weights" / "best.pt"
    best = next(r for r in sweep_runs(client, NAME)[1] if r.info.run_id in (swept / "best.yaml").read_text())
    evaluated = sweeps_cli("evaluate", str(weights), "--dataset", "synthetic", cwd=swept)
    assert evaluated.returncode == 0, evaluated.stderr
    assert f"nll {best.data.metrics['test/nll']:.3f}" in evaluated.stdout  # the trial's own test metrics
    sampled = sweeps_cli("sample", best.info.run_id, "--n", "3", "--tracking-uri", mlflow_server, cwd=swept)
    assert sampled.returncode == 0, sampled.stderr
    assert [line.split()[1] for line in sampled.stdout.splitlines()[1::2]] == ["greedy"] * 3
    trained = sweeps_cli("train", "--config", "best.yaml", "--init-from", str(weights), "--epochs", "1",
                         "--out", "again", cwd=swept)
    assert trained.returncode == 0, trained.stderr
    assert json.loads((swept / "again" / "metrics.json").read_text())["init_from"] == str(weights)


def test_bad_model_input_exits_2_with_one_line(swept, mlflow_server):
    weights = str(swept / "weights" / "best.pt")
    cases = [["evaluate", "missing.pt"], ["sample", "0" * 32, "--tracking-uri", mlflow_server],
             ["sample", weights, "--n", "0"], ["evaluate", str(swept / "best.yaml")],
             ["train", "--config", str(swept / "best.yaml"), "--init-from", weights, "--out", "bad",
              "--dataset", str(REPO / "tests" / "fixtures" / "tiny")]]
    script = ("import json\nfrom sweeps.cli import main\n"
              f"print(json.dumps([main(case) for case in {cases!r}]))")
    proc = subprocess.run([sys.executable, "-c", script], cwd=swept, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [2] * len(cases), proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert "Traceback" not in proc.stderr and len(errors) == len(cases), proc.stderr
    assert "missing.pt: file not found" in errors[0] and "0" * 32 in errors[1] and "--n" in errors[2]
    assert "not a model file" in errors[3] and "vocabulary" in errors[4]


def test_optuna_opens_the_study_without_this_project_and_resume_adds_no_duplicate(swept, mlflow_server):
    results = swept / "sweep_results" / NAME
    url = engine.storage_url(str(results))
    script = ("import json, optuna\n"
              f"study = optuna.load_study(study_name={NAME!r}, storage={url!r})\n"
              "print(json.dumps([[t.state.name, t.params, t.values, t.user_attrs['tune_trial_id']] "
              "for t in study.trials]))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def mirrored():
        proc = subprocess.run([sys.executable, "-c", script], cwd="/", capture_output=True, text=True, env=env,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    before = mirrored()
    searcher = {t.params["train.lr"]: t for t in engine.load_study(str(results)).trials}
    assert len(before) == len(searcher) == 3
    for state, params, values, _ in before:  # what the searcher was told, trial for trial
        assert state == "COMPLETE" and values == searcher[params["train.lr"]].values
    cwd = os.getcwd()
    os.chdir(swept)
    try:
        assert cli.main(["resume", NAME, "--tracking-uri", mlflow_server]) == 0
    finally:
        os.chdir(cwd)
    assert mirrored() == before
