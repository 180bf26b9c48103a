"""Training tokens/s and IW-NLL evaluation sentences/s on the synthetic configuration.

    python benchmarks/train_throughput.py [--sentences N] [--iw-sentences N] [--device auto]

Prints a markdown table. The model is He et al.'s synthetic setting (50/50 LSTMs,
32-d latent); IW-NLL uses k = 500 importance samples as in the papers.
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time

import torch

from models import metrics
from models.config import parse_config
from models.loop import Loop, available_cpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=20000, help="synthetic corpus size")
    parser.add_argument("--iw-sentences", type=int, default=100, help="sentences evaluated with k=500")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        cfg = parse_config({"device": args.device,
                            "data": {"synthetic_sentences": args.sentences, "cache_dir": cache}})
        loop = Loop(cfg)
        train = loop.corpus.train
        start = time.perf_counter()
        loop.train_on(loop.shuffled())
        train_s = time.perf_counter() - start
        subset = loop.corpus.test.head(args.iw_sentences)
        start = time.perf_counter()
        metrics.iw_nll(loop.model, subset, samples=500, samples_per_pass=cfg.eval.iw_batch,
                       batch_size=cfg.data.batch_size, device=loop.device)
        iw_s = time.perf_counter() - start
    device = loop.device.type if loop.device.type == "cpu" else torch.cuda.get_device_name(loop.device)
    print(f"machine: {platform.processor() or platform.machine()}, {available_cpus()} CPUs, device {device}, "
          f"torch {torch.__version__}")
    print("| measure | value |\n|---|---|")
    print(f"| training tokens/s (one epoch, {train.num_sentences} sentences) | {train.num_tokens / train_s:,.0f} |")
    print(f"| IW-NLL sentences/s (k = 500) | {subset.num_sentences / iw_s:,.1f} |")


if __name__ == "__main__":
    main()
