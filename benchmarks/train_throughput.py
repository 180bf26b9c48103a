"""Our training step, IW-NLL and validation against a minimal reference implementation of He et
al.'s code (benchmarks/reference.py), on the synthetic configuration (He et al. App. B.1: 50/50
LSTMs and embeddings, latent 32, vocabulary 1,004, decoder dropout 0.5).

    python benchmarks/train_throughput.py [--threads 2] [--rounds 30] [--only train,iw,validation,kernels,handwritten]

Prints a markdown table per measure, headed by the machine, torch version, thread count and load
average. The two implementations alternate within one run (the order flips every round) on the
same batches, so a machine that other jobs load slows both alike: read the ratios, which are
medians over rounds of reference time / our time. Peak memory is measured in a fresh process per
implementation (the growth of the peak resident set during the IW-NLL run).
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's models, not an installed one

import models  # noqa: E402
import models.loop  # noqa: E402
from models import metrics  # noqa: E402
from models.resolve import parse_config  # noqa: E402
from models.loop import Loop  # noqa: E402
from machine import OtherLoad  # noqa: E402
from reference import ReferenceVAE, make_optimizers, nll_iw, train_step  # noqa: E402

K = 500  # importance samples, as in the papers


def build(args, batch_size: int, sentences: int, kernels: str = "auto") -> tuple[Loop, ReferenceVAE]:
    """Our loop on the synthetic profile and a reference model holding the same weights."""
    cfg = parse_config({"threads": args.threads, "device": args.device,
                        "data": {"batch_size": batch_size, "synthetic_sentences": sentences,
                                 "cache_dir": args.cache}, "model": {"kernels": kernels}})
    loop = Loop(cfg)
    ref = ReferenceVAE(len(loop.corpus.vocab)).to(loop.device)
    ours = loop.model
    pairs = [(ref.enc_embed, ours.encoder.embed), (ref.enc_lstm, ours.encoder.lstm),
             (ref.enc_linear, ours.encoder.to_posterior), (ref.dec_embed, ours.decoder.embed),
             (ref.trans_linear, ours.decoder.to_state), (ref.dec_lstm, ours.decoder.lstm),
             (ref.pred_linear, ours.decoder.to_vocab)]
    for theirs, mine in pairs:
        theirs.load_state_dict(mine.state_dict())
    return loop, ref


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def alternate(runs: dict, rounds: int, device: torch.device) -> dict[str, list[tuple[float, float, int]]]:
    """(wall s, CPU s, minor page faults) of each named run per round, the order flipping every round."""
    names = list(runs)
    times = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            sync(device)
            wall, cpu = time.perf_counter(), time.process_time()
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            runs[name]()
            sync(device)
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu,
                                resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults))
    return times


def ratio(times: dict, clock: int, base: str = "reference", other: str = "ours") -> str:
    """Median and interquartile range over rounds of `base` time / `other` time on `clock` (0 wall,
    1 CPU time of this process)."""
    values = sorted(ref[clock] / ours[clock] for ref, ours in zip(times[base], times[other]))
    quartile = len(values) // 4
    return f"{statistics.median(values):.2f} ({values[quartile]:.2f}–{values[-1 - quartile]:.2f})"


def rate(count: float, times: list[tuple[float, float, int]]) -> float:
    return count / statistics.median(t[0] for t in times)


def bench_train(args) -> None:
    print("\n### Training step (SGD, clip 5, dropout 0.5; one update per batch)\n")
    # Page faults: a step whose temporaries the allocator hands back to the kernel takes fresh,
    # zeroed pages on the next one, and runs slower by as much as the faults say.
    print("| batch | reference tokens/s | ours tokens/s | ratio, wall (IQR) | ratio, CPU time (IQR) "
          "| page faults per step, reference / ours (median) |")
    print("|---|---|---|---|---|---|")
    for batch_size in (32, 16):
        loop, ref = build(args, batch_size, args.sentences)
        batches = list(itertools.islice(loop.shuffled(), args.steps))
        tokens = sum(b.tokens.size(0) * (b.tokens.size(1) - 1) for b in batches)
        optimizers = make_optimizers(ref)
        ref.train()

        def reference():
            for b in batches:
                train_step(ref, optimizers, b.tokens)

        # Ours is the loop's own train_on: hooks, KL schedule, divergence check and all.
        runs = {"reference": reference, "ours": lambda: loop.train_on(batches)}
        for run in runs.values():  # warm-up: first-call allocations and kernel selection
            run()
        times = alternate(runs, args.rounds, loop.device)
        faults = {name: statistics.median(t[2] for t in times[name]) / len(batches) for name in runs}
        print(f"| {batch_size} | {rate(tokens, times['reference']):,.0f} | {rate(tokens, times['ours']):,.0f} "
              f"| {ratio(times, 0)} | {ratio(times, 1)} | {faults['reference']:,.0f} / {faults['ours']:,.0f} |")


IW_SETTINGS = ((32, 100), (16, 100), (16, 50))
"""(sentences per batch, samples per pass): the defaults at batch 32 and at the synthetic profile's
batch 16, and the smaller pass the reference runs faster with."""


def iw_runs(args, batch_size: int, per_pass: int) -> tuple[dict, Loop, object]:
    loop, ref = build(args, batch_size, args.sentences)
    ref.eval()
    split = loop.corpus.test.head(args.iw_sentences)
    nll = {}

    def reference():
        total = sum(nll_iw(ref, b.tokens.to(loop.device), K, per_pass).sum().item()
                    for b in split.batches(batch_size, shuffle=False))
        nll["reference"] = total / split.num_sentences

    def ours():
        nll["ours"] = metrics.iw_nll(loop.model, split, samples=K, samples_per_pass=per_pass,
                                     batch_size=batch_size, device=loop.device)["nll"]

    return {"reference": reference, "ours": ours}, loop, (split, nll)


def bench_iw(args) -> None:
    print(f"\n### IW-NLL, k = {K}, {args.iw_sentences} test sentences "
          "(peak memory: growth of the peak RSS during the run, fresh process each)\n")
    print("| sentences × samples per pass | reference sentences/s | ours sentences/s | ratio, wall (IQR) "
          "| ratio, CPU time (IQR) | peak MB reference / ours | page faults reference / ours "
          "| NLL reference / ours |")
    print("|---|---|---|---|---|---|---|---|")
    for batch_size, per_pass in IW_SETTINGS:
        runs, loop, (split, nll) = iw_runs(args, batch_size, per_pass)
        memory = {name: probe(args, name, batch_size, per_pass) for name in runs}
        times = alternate(runs, args.iw_rounds, loop.device)
        n = split.num_sentences
        print(f"| {batch_size} × {per_pass} | {rate(n, times['reference']):.1f} | {rate(n, times['ours']):.1f} "
              f"| {ratio(times, 0)} | {ratio(times, 1)} "
              f"| {memory['reference']['peak_mb']:.0f} / {memory['ours']['peak_mb']:.0f} "
              f"| {memory['reference']['faults']:,} / {memory['ours']['faults']:,} "
              f"| {nll['reference']:.2f} / {nll['ours']:.2f} |")


def probe(args, name: str, batch_size: int, per_pass: int) -> dict:
    """Peak-memory growth and minor page faults of one IW-NLL run of `name`, in a fresh process."""
    command = [sys.executable, __file__, "--probe", f"{name},{batch_size},{per_pass}",
               "--threads", str(args.threads), "--device", args.device, "--cache", args.cache,
               "--sentences", str(args.sentences), "--iw-sentences", str(args.iw_sentences)]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def run_probe(args) -> None:
    name, batch_size, per_pass = args.probe.split(",")
    runs, loop, _ = iw_runs(args, int(batch_size), int(per_pass))
    if loop.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(loop.device)
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset the peak resident set (VmHWM) to the current one
    before = _status_kb("VmRSS")
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    runs[name]()
    out = {"peak_mb": (_status_kb("VmHWM") - before) / 1024,
           "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults}
    if loop.device.type == "cuda":
        out["peak_mb"] = torch.cuda.max_memory_allocated(loop.device) / 2 ** 20
    print(json.dumps(out))


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))


def bench_validation(args) -> None:
    loop, _ = build(args, 16, 20000)  # He et al.'s synthetic setting: 16k/2k/2k, batch 16
    print(f"\n### Validation per epoch (−ELBO, MI over the whole split, AU; {loop.corpus.valid.num_sentences} "
          f"sentences) against one epoch of training ({loop.steps_per_epoch} steps of batch 16)\n")
    model, split, ev = loop.model, loop.corpus.valid, loop.cfg.eval
    generator = torch.Generator().manual_seed(0)
    posteriors = metrics.posteriors(model, split, batch_size=16, device=loop.device)
    parts = {
        "validation (−ELBO pass with the posteriors, MI, AU)": loop.validate,
        "of which MI over the whole split": lambda: metrics.mutual_info_from(*posteriors, samples=ev.mi_samples,
                                                                             generator=generator),
    }
    epochs, validations = [], {name: [] for name in parts}
    for _ in range(args.epochs):  # training and validation alternate, as in a run
        start = time.perf_counter()
        loop.train_on(loop.shuffled())
        epochs.append(time.perf_counter() - start)
        for name, part in parts.items():
            start = time.perf_counter()
            part()
            validations[name].append(time.perf_counter() - start)
    epoch = statistics.median(epochs)
    print(f"| measure | seconds, wall (median of {args.epochs}) | share of an epoch's training |\n|---|---|---|")
    print(f"| one epoch of training | {epoch:.2f} | 100 % |")
    for name, seconds in validations.items():
        print(f"| {name} | {statistics.median(seconds):.2f} | {statistics.median(seconds) / epoch:.1%} |")


def bench_kernels(args) -> None:
    """Our training step and IW-NLL by each `model.kernels` choice of --kernels, alternating in one
    run on the same batches: the speed each build target gives (their values are the same bits)."""
    choices = args.kernels.split(",")
    base = choices[0]
    print(f"\n### Kernel choices against {base}: training step (batch 32, {args.steps} steps) and IW-NLL "
          f"(k = {K}, {args.iw_sentences} sentences, 32 × 100 per pass)\n")
    print(f"| model.kernels | arithmetic | training tokens/s | speed relative to {base}, wall (IQR) | IW-NLL sentences/s "
          f"| speed relative to {base}, wall (IQR) |")
    print("|---|---|---|---|---|---|")
    loops = {name: build(args, 32, args.sentences, name)[0] for name in choices}
    batches = list(itertools.islice(loops[base].shuffled(), args.steps))
    tokens = sum(b.tokens.size(0) * (b.tokens.size(1) - 1) for b in batches)
    split = loops[base].corpus.test.head(args.iw_sentences)
    train = {name: functools.partial(loop.train_on, batches) for name, loop in loops.items()}
    iw = {name: functools.partial(metrics.iw_nll, loop.model, split, samples=K, samples_per_pass=100, batch_size=32,
                                  device=loop.device) for name, loop in loops.items()}
    for run in [*train.values(), *iw.values()]:  # warm-up
        run()
    train_times = alternate(train, args.rounds, loops[base].device)
    iw_times = alternate(iw, args.iw_rounds, loops[base].device)
    for name, loop in loops.items():
        print(f"| {name} | {models.arithmetic(loop.cfg)} | {rate(tokens, train_times[name]):,.0f} "
              f"| {ratio(train_times, 0, base, name)} | {rate(split.num_sentences, iw_times[name]):.1f} "
              f"| {ratio(iw_times, 0, base, name)} |")


def bench_handwritten(args) -> None:
    """Our training step against itself with torch's pieces in place of the hand-written ones:
    torch.optim.SGD(foreach=True) for models.loop.optimizer_step, nn.Dropout for models.nets.Dropout."""
    print(f"\n### Hand-written pieces against torch's (batch 32 and 16, {args.steps} steps a round)\n")
    print("| batch | variant | tokens/s | speed of ours relative to it, wall (IQR) |\n|---|---|---|---|")
    for batch_size in (32, 16):
        loops = {name: build(args, batch_size, args.sentences)[0] for name in ("ours", "torch SGD", "nn.Dropout")}
        for opt in (loops["torch SGD"].dec_optimizer, loops["torch SGD"].enc_optimizer):
            opt.defaults["foreach"] = True
            for group in opt.param_groups:
                group["foreach"] = True
        decoder = loops["nn.Dropout"].model.decoder
        decoder.dropout_in = torch.nn.Dropout(decoder.dropout_in.p)
        decoder.dropout_out = torch.nn.Dropout(decoder.dropout_out.p)
        batches = list(itertools.islice(loops["ours"].shuffled(), args.steps))
        tokens = sum(b.tokens.size(0) * (b.tokens.size(1) - 1) for b in batches)

        def torch_sgd():
            with patched(models.loop, "optimizer_step", lambda optimizer: optimizer.step()):
                loops["torch SGD"].train_on(batches)

        runs = {"ours": functools.partial(loops["ours"].train_on, batches), "torch SGD": torch_sgd,
                "nn.Dropout": functools.partial(loops["nn.Dropout"].train_on, batches)}
        for run in runs.values():
            run()
        times = alternate(runs, args.rounds, loops["ours"].device)
        for name in runs:
            print(f"| {batch_size} | {name} | {rate(tokens, times[name]):,.0f} | {ratio(times, 0, name, 'ours')} |")


@contextlib.contextmanager
def patched(owner, name: str, value):
    old = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, old)


def header(args) -> None:
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"`python {' '.join(sys.argv)}`\n")
    print(f"machine: {name}, {os.cpu_count()} CPUs; torch {torch.__version__}, {args.threads} threads")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=30, help="alternating rounds per training measure")
    parser.add_argument("--iw-rounds", type=int, default=5, help="alternating rounds per IW-NLL measure")
    parser.add_argument("--steps", type=int, default=10, help="training steps per round")
    parser.add_argument("--sentences", type=int, default=4000, help="synthetic corpus for the step and IW runs")
    parser.add_argument("--iw-sentences", type=int, default=32, help="test sentences per IW-NLL round")
    parser.add_argument("--epochs", type=int, default=2, help="epochs in the validation measure")
    parser.add_argument("--only", default="train,iw,validation")
    parser.add_argument("--kernels", default="native,x86-64-v3,x86-64-v2,torch",
                        help="model.kernels choices the `kernels` measure compares, the first the base")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "vae-bench-cache"))
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        return run_probe(args)
    load = OtherLoad()
    header(args)
    measures = {"train": bench_train, "iw": bench_iw, "validation": bench_validation, "kernels": bench_kernels,
                "handwritten": bench_handwritten}
    for name in args.only.split(","):
        measures[name](args)
    print(f"\n{load.line()}")


if __name__ == "__main__":
    main()
