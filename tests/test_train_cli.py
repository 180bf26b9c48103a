import json
import subprocess
import sys

import pytest
import yaml

import models
from models import EvaluationProgress
from sweeps.cli.train import evaluation_printer
from tests.helpers import sweeps_cli, tiny_config


def tiny_sets(cache_dir):
    flat = []
    for section, values in tiny_config(cache_dir).items():
        pairs = values.items() if isinstance(values, dict) else [(None, values)]
        for key, value in pairs:
            flat += ["--set", f"{section}.{key}={value}" if key else f"{section}={value}"]
    return flat


@pytest.mark.e2e
def test_train_command_writes_metrics_and_rerunnable_config(tmp_path):
    out = tmp_path / "run"
    proc = sweeps_cli("train", "--method", "fb", *tiny_sets(tmp_path), "--set", "kl.free_bits.lam=3",
                   "--epochs", "2", "--seed", "3", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"arithmetic: {models.arithmetic({})}"  # which arithmetic, before anything else
    assert proc.stdout.count("epoch ") >= 2 and "  fb_at_hinge " in proc.stdout  # the method's diagnostics
    metrics = json.loads((out / "metrics.json").read_text())
    assert lines[-2] == f"verdict: {metrics['verdict']}" and "fb: " in metrics["verdict"]
    assert set(metrics["test"]) == {"nll", "ppl", "neg_elbo", "recon", "kl", "mi", "mi_batch", "au"}
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["kl"]["free_bits"] == {"kind": "fb", "lam": 3.0}
    assert config["seed"] == 3 and config["train"]["max_epochs"] == 2
    # The written config reruns as is and gives the same result.
    again = sweeps_cli("train", "--config", str(out / "config.yaml"), "--out", str(tmp_path / "again"))
    assert again.returncode == 0, again.stderr
    rerun = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert rerun["test"] == metrics["test"]


def test_commands_parse_and_refuse_bad_input_without_importing_torch_ray_or_mlflow(tmp_path):
    """Seconds of imports (torch 2 s, Ray, MLflow, matplotlib) wait until a command needs them:
    `status`, `--help` or a typo answer at once."""
    heavy = ("torch", "ray", "mlflow", "matplotlib")
    script = ("import sys\nfrom sweeps.cli import build_parser, main\nbuild_parser()\n"
              f"code = main(['train', '--method', 'nope', '--out', {str(tmp_path)!r}])\n"
              f"print(code, sorted(m for m in {heavy!r} if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.stdout.split("\n")[-2] == "2 []", proc.stdout + proc.stderr
    assert "unknown method 'nope'" in proc.stderr


def test_a_test_of_minutes_prints_its_pace_and_one_of_seconds_prints_nothing(capsys):
    show = evaluation_printer(every_s=10.0)
    for sentences, seconds in ((100, 4.0), (200, 11.0), (300, 16.0), (400, 22.0), (1000, 50.0)):
        show(EvaluationProgress(sentences, 1000, seconds))
    assert capsys.readouterr().out.splitlines() == ["testing  IW-NLL 200/1000 sentences  (11s)",
                                                    "testing  IW-NLL 400/1000 sentences  (22s)"]
