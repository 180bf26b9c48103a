"""benchmarks/gpu_check.sh, the acceptance run for the first CUDA machine, on this CPU machine:
it must run and say what it skipped, not fail."""
import subprocess
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine runs the real check")
def test_without_cuda_the_gpu_check_skips_the_cuda_rows_and_passes(tmp_path):
    done = subprocess.run([str(REPO / "benchmarks" / "gpu_check.sh"), "--skip-install", "--skip-demo"], cwd=REPO,
                          env={"PATH": "/usr/bin:/bin", "GPU_CHECK_DIR": str(tmp_path)}, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in done.stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| check")}
    assert rows["cuda"] == "skipped" and "torch.cuda.is_available() is False" in done.stdout
    for check in ("train every method on cuda", "iw-cuda-vs-cpu", "benchmarks", "4-trial sweep on one GPU"):
        assert rows[check] == "skipped", check
    assert "FAILED" not in done.stdout
