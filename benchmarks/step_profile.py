"""Where a training step's time goes, ours against the reference (benchmarks/reference.py), and
how LSTMs other than oneDNN's compare at the synthetic sizes.

    python benchmarks/step_profile.py [--threads 1] [--batch 16] [--steps 100] [--compile]

Prints, headed like train_throughput.py: the operators' self time per implementation under
torch.profiler with the shares of the LSTMs (oneDNN's in the reference, models/kernels/lstm.c in
ours) and of the matrix products; then one LSTM's forward and backward (the encoder's size at
this batch) by oneDNN (`nn.LSTM`), by our kernel (`models.kernels.lstm.LSTM`), by the same recurrence
written in torch operators, by oneDNN on a 2 × 12 × 2 input (its fixed cost per call), and, with
--compile, that recurrence under
`torch.compile` (needs a C++ compiler; the compile time is printed apart).
"""
from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference import make_optimizers, train_step  # noqa: E402
from machine import OtherLoad  # noqa: E402
from train_throughput import build, header  # noqa: E402
from models.kernels.choice import resolve  # noqa: E402  (train_throughput put this checkout first)
from models.kernels.lstm import LSTM  # noqa: E402

SHARED = {"LSTM (oneDNN's; ours: the kernel)": ("aten::mkldnn_rnn_layer", "aten::mkldnn_rnn_layer_backward",
                                                 "_Recurrence", "_RecurrenceBackward"),
          "matrix products": ("aten::mm",)}


def profile_steps(args) -> None:
    loop, ref = build(args, args.batch, args.sentences)
    batches = list(itertools.islice(loop.shuffled(), 10))
    optimizers = make_optimizers(ref)
    ref.train()
    runs = {"reference": lambda: [train_step(ref, optimizers, b.tokens) for b in batches],
            "ours": lambda: loop.train_on(batches)}
    for run in runs.values():
        run()  # warm-up
    totals = {name: [] for name in runs}
    shares = {name: [] for name in runs}
    for r in range(args.rounds):  # alternating: one profile of either is too noisy to compare
        for name, run in (runs.items() if r % 2 == 0 else reversed(runs.items())):
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(args.steps // len(batches)):
                    run()
            self_us = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
            totals[name].append(sum(self_us.values()))
            shares[name].append([sum(self_us.get(op, 0) for op in ops) / totals[name][-1] for ops in SHARED.values()])
    print(f"\n### Operators' self time, {args.steps} steps of batch {args.batch} (torch.profiler, "
          f"median of {args.rounds} alternating rounds)\n")
    print("| implementation | operators, ms | " + " | ".join(f"{name}, share" for name in SHARED) + " |")
    print("|---|---|" + "---|" * len(SHARED))
    for name in runs:
        median = [statistics.median(column) for column in zip(*shares[name])]
        print(f"| {name} | {statistics.median(totals[name]) / 1000:,.0f} | "
              + " | ".join(f"{share:.0%}" for share in median) + " |")
    ratios = [ref / ours for ref, ours in zip(totals["reference"], totals["ours"])]
    print(f"\nreference / ours, operators' time: {statistics.median(ratios):.2f} (median over rounds)")


def recurrence(x, h, c, w_ih, w_hh, bias):
    """nn.LSTM's recurrence (gates i, f, g, o) in torch operators: x (B, T, E) → outputs, h, c."""
    inputs = torch.addmm(bias, x.flatten(0, 1), w_ih.t()).view(x.size(0), x.size(1), -1).unbind(1)
    outputs = []
    for step_input in inputs:
        i, f, g, o = torch.addmm(step_input, h, w_hh.t()).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outputs.append(h)
    return torch.stack(outputs, 1), h, c


def time_lstms(args) -> None:
    lstm = nn.LSTM(50, 50, batch_first=True)  # the synthetic profile's encoder
    x = torch.randn(args.batch, 12, 50, requires_grad=True)  # 10 words, <s>, </s>
    zeros = torch.zeros(args.batch, 50)

    def through(fn):
        def run():
            out, h, _ = fn(x, zeros, zeros, lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0 + lstm.bias_hh_l0)
            (out.sum() + h.sum()).backward()
        return run

    def onednn(module=lstm, inputs=x):
        out, (h, _) = module(inputs)
        (out.sum() + h[0].sum()).backward()

    kernel = LSTM(50, 50, batch_first=True, kernels=resolve("native"))
    kernel.load_state_dict(lstm.state_dict())
    # The same call on next to no work: what of oneDNN's time is fixed cost per call.
    tiny = nn.LSTM(2, 2, batch_first=True), torch.randn(2, 12, 2, requires_grad=True)
    runs = {"oneDNN (nn.LSTM)": onednn, "our kernel (models.kernels.lstm.LSTM)": lambda: onednn(kernel),
            "torch operators": through(recurrence),
            "oneDNN at 2 × 12 × 2, hidden 2": lambda: onednn(*tiny)}
    if args.compile:
        start = time.perf_counter()
        compiled = through(torch.compile(recurrence))
        compiled()
        print(f"\n`torch.compile` of the recurrence: {time.perf_counter() - start:.0f} s to compile")
        runs["torch operators, torch.compile"] = compiled
    times = {name: [] for name in runs}
    for r in range(args.rounds):  # alternating, as train_throughput.py does
        for name, run in (runs.items() if r % 2 == 0 else reversed(runs.items())):
            start = time.perf_counter()
            for _ in range(20):
                run()
            times[name].append((time.perf_counter() - start) / 20)
    print(f"\n### One LSTM's forward and backward, {args.batch} × 12 × 50, hidden 50 (median of {args.rounds} rounds)\n")
    print("| LSTM | ms | against oneDNN |\n|---|---|---|")
    base = statistics.median(times["oneDNN (nn.LSTM)"])
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values) * 1e3:.2f} | {statistics.median(values) / base:.2f}× the time |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=100, help="profiled training steps per implementation")
    parser.add_argument("--rounds", type=int, default=10, help="alternating rounds of each measure")
    parser.add_argument("--compile", action="store_true", help="also time the recurrence under torch.compile")
    parser.add_argument("--sentences", type=int, default=4000)
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "vae-bench-cache"))
    args = parser.parse_args()
    args.device = "cpu"
    load = OtherLoad()
    header(args)
    torch.set_num_threads(args.threads)
    profile_steps(args)
    time_lstms(args)
    print(f"\n{load.line()}")


if __name__ == "__main__":
    main()
