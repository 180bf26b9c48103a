"""The numeric half of benchmarks/gpu_check.sh: one model file's test metrics on CUDA against the
CPU's, from the same weights and the same noise (drawn on a CPU generator either way).

    python benchmarks/gpu_check.py MODEL_FILE [DEVICE]    (DEVICE: cuda, or cpu to rehearse)

Prints each device's metrics as JSON, then one line: the NLLs and their largest relative
difference against TOLERANCE. Exit status 1 if they do not agree within it.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's models

from models import evaluate_model  # noqa: E402

TOLERANCE = 1e-3
"""Relative, on NLL, −ELBO and KL: cuDNN's LSTM may run its products in TF32 (10-bit mantissas),
which moves a sum of a sentence's log-probabilities by ~1e-4 of it; float32 alone would agree to
~1e-6 (models/kernels/__init__.py, against torch's CPU path)."""


def main() -> None:
    path, device = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "cuda"
    metrics = {"cpu": evaluate_model(path, {"device": "cpu"}), device: evaluate_model(path, {"device": device})}
    worst = max(abs(metrics[device][k] - metrics["cpu"][k]) / max(abs(metrics["cpu"][k]), 1e-12)
                for k in ("nll", "neg_elbo", "kl"))
    print(json.dumps(metrics))
    print(f"NLL {metrics[device]['nll']:.4f} on {device}, {metrics['cpu']['nll']:.4f} on cpu: largest relative "
          f"difference (NLL, -ELBO, KL) {worst:.2g}, tolerance {TOLERANCE}")
    sys.exit(0 if worst <= TOLERANCE else 1)


if __name__ == "__main__":
    main()
