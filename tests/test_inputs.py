"""Malformed input (search spaces, command options, corpora) is refused before anything starts:
exit status 2 and one line naming the file or option and the key, with no Ray, no MLflow
server and nothing written (no sweep folder, no mlflow.db, no --out directory)."""
import json
import os
import subprocess
import sys
import tempfile

import pytest
import torch

from tests.helpers import LR, REPO, write_space

CPUS, GPUS = os.cpu_count(), torch.cuda.device_count()

# (name, file contents): bytes are written as they are.
FILES = {
    "syntax.yaml": "params: {train.lr: [1, 2\n",
    "dup.yaml": "trials: 3\ntrials: 4\n",
    "unhashable.yaml": "method: vae\nfixed: {[train.lr]: 0.5}\n",
    "latin1.yaml": b"method: vae  # caf\xe9\n",
    "list.yaml": "- method\n- vae\n",
    "empty.yaml": "",
    "unknown.yaml": "trails: 3\n",
    "field.yaml": "method: vae\nparams:\n  train.lr: {type: float, low: 0.1, high: 1.0, logg: true}\n",
    "bounds.yaml": "method: vae\nparams:\n  train.lr: {type: float, low: 1.0, high: 0.1}\n",
    "preset.yaml": "method: fancy\n",
    "metric.yaml": "method: vae\nobjectives: [{metric: test/bleu, mode: max}]\n",
    "gpus.yaml": f"method: vae\nresources: {{gpus: {GPUS + 1}}}\n",
    "cpus.yaml": f"method: vae\nresources: {{cpus: {CPUS + 1}}}\n",
    "grid.yaml": "method: vae\nsampler: grid\nparams:\n  seed: {type: categorical, choices: [0, 1]}\n",
    "joint.yaml": "methods: {vae: {}, fb: {}}\n",
    "dup-config.yaml": "train:\n  lr: 0.5\n  lr: none\n",  # were the last kept, models would refuse it
    "empty.train.txt": "", "empty.valid.txt": "a b\n", "empty.test.txt": "a b\n",
    "blank.train.txt": "a b\n", "blank.valid.txt": "\n  \n\n", "blank.test.txt": "a b\n",
    "latin.train.txt": "a b\n", "latin.valid.txt": "a b\n", "latin.test.txt": b"caf\xe9 b\n",
    "label.train.txt": "1\ta b\nc d\n", "label.valid.txt": "a b\n", "label.test.txt": "a b\n",
    "dir.valid.txt": "a b\n", "dir.test.txt": "a b\n",
}

# (case, command line, what its one error line must contain)
CASES = [
    # search spaces
    ("space-syntax", ["run", "syntax.yaml"], ["syntax.yaml: line 2", "expected ',' or ']'"]),
    ("space-duplicate-key", ["run", "dup.yaml"], ["dup.yaml: line 2", "duplicate key 'trials'"]),
    ("space-unhashable-key", ["run", "unhashable.yaml"], ["unhashable.yaml: line 2", "a key must be a name"]),
    ("space-not-utf8", ["run", "latin1.yaml"], ["latin1.yaml: not UTF-8 text (byte 18)"]),
    ("space-not-a-mapping", ["run", "list.yaml"], ["list.yaml: expected a mapping"]),
    ("space-empty", ["run", "empty.yaml"], ["empty.yaml: expected a mapping"]),
    ("space-unknown-key", ["run", "unknown.yaml"], ["unknown.yaml: trails: unknown key"]),
    ("space-unknown-field", ["run", "field.yaml"], ["field.yaml: params.train.lr", "unknown field 'logg'"]),
    ("space-bounds", ["run", "bounds.yaml"], ["bounds.yaml: params.train.lr", "must be < high"]),
    ("space-preset", ["run", "preset.yaml"], ["preset.yaml: method: unknown method preset 'fancy'"]),
    ("space-metric", ["run", "metric.yaml"], ["metric.yaml: objectives[0]: unknown metric 'test/bleu'"]),
    ("space-missing", ["run", "nope.yaml"], ["nope.yaml: cannot read"]),
    ("space-directory", ["run", "adir"], ["adir: cannot read"]),
    ("space-gpus-beyond-any-node", ["run", "gpus.yaml"], ["gpus.yaml: resources.gpus", f"this machine has {GPUS}"]),
    ("space-cpus-beyond-any-node", ["run", "cpus.yaml"], ["cpus.yaml: resources.cpus", f"this machine has {CPUS}"]),
    # options of `run`
    ("trials-0", ["run", "lr.yaml", "--trials", "0"], ["--trials: must be positive"]),
    ("max-concurrent-0", ["run", "lr.yaml", "--max-concurrent", "0"], ["--max-concurrent: must be positive"]),
    ("cpus-0", ["run", "lr.yaml", "--cpus-per-trial", "0"], ["--cpus-per-trial: must be positive"]),
    ("gpus-negative", ["run", "lr.yaml", "--gpus-per-trial", "-1"], ["--gpus-per-trial: must be >= 0"]),
    ("gpus-beyond-any-node", ["run", "lr.yaml", "--gpus-per-trial", str(GPUS + 1)],
     ["--gpus-per-trial: a trial needs", f"this machine has {GPUS}"]),
    ("cpus-beyond-any-node", ["run", "lr.yaml", "--cpus-per-trial", str(CPUS + 1)],
     ["--cpus-per-trial: a trial needs", f"this machine has {CPUS}"]),
    ("set-out-of-range", ["run", "lr.yaml", "--set", "model.latent_dim=0"], ["model.latent_dim: must be positive"]),
    ("set-unknown-key", ["run", "lr.yaml", "--set", "train.lrr=1"], ["train.lrr"]),
    ("set-no-value", ["run", "lr.yaml", "--set", "train.lr"], ["--set 'train.lr': expected KEY=VALUE"]),
    ("set-bad-yaml", ["run", "lr.yaml", "--set", "train.lr=[1"], ["--set 'train.lr=[1'", "not valid YAML"]),
    ("set-searched-key", ["run", "lr.yaml", "--set", "train.lr=0.5"],
     ["--set train.lr: train.lr is searched by lr.yaml (params.train.lr)"]),
    ("set-mapping-over-searched-key", ["run", "lr.yaml", "--set", "train={lr: 0.5}"],
     ["--set train: train.lr is searched by lr.yaml (params.train.lr)"]),
    ("seed-searched", ["run", "grid.yaml", "--seed", "3"], ["--seed: seed is searched by grid.yaml (params.seed)"]),
    ("set-joint-method", ["run", "joint.yaml", "--set", "method=fb"],
     ["--set method: method is searched by joint.yaml (methods)"]),
    ("epochs-0", ["run", "lr.yaml", "--epochs", "0"], ["train.max_epochs: must be positive"]),
    ("profile-unknown", ["run", "lr.yaml", "--profile", "nope"], ["profile", "nope"]),
    ("name", ["run", "lr.yaml", "--name", "a b"], ["--name 'a b'"]),
    ("tracking-uri-not-a-server", ["run", "lr.yaml", "--tracking-uri", "sqlite:///x.db"], ["tracking server"]),
    ("tracking-uri-with-password", ["run", "lr.yaml", "--tracking-uri", "file://sweeps:hunter2@db/x"],
     ["tracking URI 'file://sweeps:***@db/x'"]),
    ("resume-unknown", ["resume", "nothing"], ["no sweep 'nothing'"]),
    ("ui-without-store", ["ui"], ["mlflow.db"]),
    # corpora
    ("dataset-missing", ["run", "lr.yaml", "--dataset", "missing/corpus"],
     ["missing/corpus.train.txt: file not found"]),
    ("dataset-empty-file", ["run", "lr.yaml", "--dataset", "empty"], ["empty.train.txt: file is empty"]),
    ("dataset-blank-lines", ["run", "lr.yaml", "--dataset", "blank"], ["blank.valid.txt: contains no words"]),
    ("dataset-not-utf8", ["run", "lr.yaml", "--dataset", "latin"], ["latin.test.txt: not UTF-8 text"]),
    ("dataset-unreadable", ["run", "lr.yaml", "--dataset", "dir"], ["dir.train.txt: cannot read"]),
    ("dataset-labels-mixed", ["run", "lr.yaml", "--dataset", "label"], ["label.train.txt:2: no label"]),
    ("set-one-split", ["run", "lr.yaml", "--set", "data.train=blank.train.txt"], ["data.valid: no file given"]),
    ("train-split-missing", ["train", "--out", "out", "--train", "missing.txt", "--valid", "blank.train.txt",
                             "--test", "blank.test.txt"], ["missing.txt: file not found"]),
    ("train-dataset-empty", ["train", "--out", "out", "--dataset", "empty"], ["empty.train.txt: file is empty"]),
    ("train-split-blank", ["train", "--out", "out", "--method", "fb", "--dataset", "blank"],
     ["blank.valid.txt: contains no words"]),
    ("train-config-duplicate-key", ["train", "--out", "out", "--config", "dup-config.yaml"],
     ["dup-config.yaml: line 3", "duplicate key 'lr'"]),
    ("train-dataset-missing", ["train", "--out", "out", "--dataset", "missing/corpus"],
     ["missing/corpus.train.txt: file not found"]),
    # options of `train`
    ("train-set-unknown-key", ["train", "--out", "out", "--set", "model.latnt_dim=3"], ["model.latnt_dim"]),
    ("train-method-unknown", ["train", "--out", "out", "--method", "nope"], ["unknown method 'nope'"]),
]

# Each case through the CLI's entry point in one fresh interpreter, which reports after each
# case what it started or wrote. Ray and the MLflow server are stopped again when a command
# ends, by error too, so what shows whether one started is what outlives it: a Ray session
# folder (under RAY_TMPDIR), the CPU time of child processes that ran and were reaped, children
# still alive, files in the folder the cases run in, and the time the case took.
SCRIPT = """
import contextlib, io, json, os, resource, sys, time
from pathlib import Path
import ray
from sweeps.cli import main

def children():
    return [p for p in os.listdir("/proc") if p.isdigit() and p != str(os.getpid())
            and open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1] == str(os.getpid())]

def children_seconds():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime

def paths():
    return {str(p) for p in Path(".").rglob("*")}

for case in json.loads(sys.argv[1]):
    err, before, cpu, start = io.StringIO(), paths(), children_seconds(), time.monotonic()
    with contextlib.redirect_stderr(err):
        code = main(case)
    print(json.dumps({"code": code, "stderr": err.getvalue(), "seconds": time.monotonic() - start,
                      "ray": ray.is_initialized(), "ray_sessions": os.listdir(os.environ["RAY_TMPDIR"]),
                      "children": children(), "children_seconds": children_seconds() - cpu,
                      "written": sorted(paths() - before), "mlflow": "mlflow" in sys.modules}), flush=True)
"""
REFUSAL_S = 30
"""Imports included (torch takes seconds on a busy machine): a tracking server's start or
MLflow's retries (minutes) take longer."""
CHILD_CPU_S = 0.5
"""CPU time children may have used: a C compiler's version query (models.kernels) takes
milliseconds; a Python child, such as a server's guard or Ray's processes, takes longer to start."""


@pytest.fixture(scope="module")
def refused(tmp_path_factory):
    """{case: what the interpreter reported after it}."""
    tmp = tmp_path_factory.mktemp("inputs")
    for name, text in FILES.items():
        (tmp / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    (tmp / "adir").mkdir()
    (tmp / "dir.train.txt").mkdir()
    write_space(tmp / "lr.yaml", LR)
    # Short: Ray's socket paths, were a case to start it, must fit in 107 bytes.
    with tempfile.TemporaryDirectory(prefix="ri", dir="/tmp") as ray_tmp:
        proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps([argv for _, argv, _ in CASES])], cwd=tmp,
                              capture_output=True, text=True, timeout=600,
                              env={**os.environ, "PYTHONPATH": str(REPO), "RAY_TMPDIR": ray_tmp})
    assert proc.returncode == 0, proc.stderr
    reports = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"code": ')]
    return dict(zip((name for name, _, _ in CASES), reports, strict=True))


def test_the_table_is_large_and_its_cases_distinct():
    assert len(CASES) >= 30 and len({name for name, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize("name, argv, expected", CASES, ids=[case[0] for case in CASES])
def test_malformed_input_exits_2_with_one_line_naming_it(refused, name, argv, expected):
    code, stderr = refused[name]["code"], refused[name]["stderr"]
    assert code == 2, stderr
    assert len(stderr.splitlines()) == 1 and stderr.startswith("error: "), stderr  # no traceback, no noise
    for text in expected:
        assert text in stderr, stderr


@pytest.mark.parametrize("name", [case[0] for case in CASES])
def test_a_refusal_starts_nothing_writes_nothing_and_takes_seconds(refused, name):
    report = refused[name]
    assert not report["ray"] and report["ray_sessions"] == [], report
    assert report["children"] == [] and report["children_seconds"] < CHILD_CPU_S, report
    assert report["written"] == [] and not report["mlflow"], report
    assert report["seconds"] < REFUSAL_S, report


def test_a_refused_uri_is_shown_without_its_password(refused):
    assert "hunter2" not in refused["tracking-uri-with-password"]["stderr"]
