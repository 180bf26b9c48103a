"""When BatchNorm's ε switches BN-VAE off (issue 23, item 3).

BN-VAE's floor on the KL (Song et al. Eq. 14: E[μ̂²] = γ² + β²) needs the batches' variance of
μ, before the normalisation, to be well above ε: below it the layer outputs about β and the
floor is gone (models/methods/bn.py). This trains BN-VAE under variations of what could decide
it (the corpus, the learning rate, the encoder's initialisation, decoder dropout, γ) with the
published ε (1e-5, PyTorch's and the authors' nn.BatchNorm1d) and a much smaller one, and
records per validation the smallest spread of μ against √ε, the share of dimensions below it,
KL and AU (diag/bn_*), and each run's verdict. Writes docs/results/bn_epsilon.md and
bn_epsilon_spread.png."""
from __future__ import annotations

import argparse
import tempfile

import matplotlib.pyplot as plt

from experiments.ptb_table import SPLIT_DIR, split_test
from experiments.report import REPO, RESULTS, header, markdown_table, write_results
from experiments.runs import method_config, run_jobs
from models import parse_config

CONDITIONS = {  # name -> the changes to BN-VAE's preset
    "published": {},
    "lr-quarter": {"train": {"lr_scale": 0.25}},
    "lr-double": {"train": {"lr_scale": 2.0}},  # PTB: 1.0, the plain defaults' rate
    "uniform-init": {"methods": {"bn": {"encoder_init": "uniform"}}},  # He et al.'s U(-0.01, 0.01)
    "no-dropout": {"model": {"dec_dropout_in": 0.0, "dec_dropout_out": 0.0}},
    "gamma-0.3": {"methods": {"bn": {"gamma": 0.3}}},
}
EPSILONS = (1e-5, 1e-12)


def corpus(name: str, cache: str, sentences: int) -> dict:
    if name == "synthetic":
        return {"profile": "synthetic", "data": {"synthetic_sentences": sentences, "cache_dir": cache}}
    paths = split_test(REPO.parent / "shared" / "data" / "ptb", SPLIT_DIR)
    return {"profile": "ptb", "data": {**paths, "name": "ptb", "max_vocab": 6000, "cache_dir": cache}}


def config(corpus_base: dict, condition: dict, eps: float, args) -> dict:
    base = {"threads": 1, "device": "cpu", **corpus_base,
            "model": {"enc_emb_dim": args.hidden, "enc_hidden": args.hidden, "dec_emb_dim": args.hidden,
                      "dec_hidden": args.hidden},
            "train": {"max_epochs": args.epochs}, "eval": {"iw_samples": args.iw_samples, "iw_batch": args.iw_samples}}
    cfg = method_config("bn", base)
    changes = {k: dict(v) for k, v in condition.items()}
    scale = changes.get("train", {}).pop("lr_scale", None)
    if scale is not None:  # a multiple of the learning rate the config resolves to (synthetic 1.0, PTB 0.5)
        changes["train"]["lr"] = scale * parse_config(cfg).train.lr
    return method_config("bn", cfg, overrides={"bn": {**changes, "methods": {"bn": {
        **changes.get("methods", {}).get("bn", {}), "eps": eps}}}})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", default="synthetic,ptb")
    parser.add_argument("--conditions", default=",".join(CONDITIONS),
                        help="comma-separated, of: " + ", ".join(CONDITIONS))
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--sentences", type=int, default=20000, help="synthetic corpus size, split 80/10/10")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--hidden", type=int, default=50, help="LSTM and embedding sizes (PTB profile: 256)")
    parser.add_argument("--iw-samples", type=int, default=20)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.conditions.split(",")) - set(CONDITIONS))
    if unknown:
        parser.error(f"unknown condition(s) {', '.join(unknown)}; known: {', '.join(CONDITIONS)}")
    with tempfile.TemporaryDirectory(prefix="bn-epsilon-") as cache:
        corpora = {name: corpus(name, cache, args.sentences) for name in args.corpora.split(",")}
        jobs = [(f"{name}|{condition}|{eps:g}", seed, config(base, CONDITIONS[condition], eps, args))
                for name, base in corpora.items() for condition in args.conditions.split(",") for eps in EPSILONS
                for seed in range(args.seeds)]
        runs = run_jobs(jobs, args.workers, RESULTS / "bn_epsilon_runs.jsonl")
    rows, curves = [], {}
    for run in runs:
        name, condition, eps = run["label"].split("|")
        last = run["history"][-1]
        defeated_at = next((h["epoch"] for h in run["history"] if h["diag/bn_defeated"] > 0), None)
        smallest = min(h["diag/bn_spread_min"] for h in run["history"])
        rows.append([name, condition, eps, str(run["seed"]), f"{smallest:.2g}",
                     f"{last['diag/bn_defeated']:.0%}", "–" if defeated_at is None else str(defeated_at),
                     f"{run['test']['kl']:.2f}", f"{run['test']['au']:.0f}", f"{run['test']['nll']:.2f}"])
        curves[run["label"], run["seed"]] = [h["diag/bn_spread_min"] for h in run["history"]]
    plot = RESULTS / "bn_epsilon_spread.png"
    fig, axes = plt.subplots(1, len(EPSILONS), figsize=(11, 4), sharey=True)
    for ax, eps in zip(axes, EPSILONS):
        for (label, seed), values in curves.items():
            if label.endswith(f"|{eps:g}"):
                ax.semilogy(range(1, len(values) + 1), [max(v, 1e-12) for v in values], alpha=0.7,
                            label=f"{label.rsplit('|', 1)[0]} s{seed}")
        ax.axhline(eps ** 0.5, color="k", linestyle="--", linewidth=1)
        ax.set(title=f"ε = {eps:g} (dashed: √ε)", xlabel="validation", ylabel="smallest spread of μ before BN")
    axes[-1].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(plot, dpi=110)
    plt.close(fig)
    settings = [f"BN-VAE (preset `bn`, γ 0.6 unless stated) on {args.corpora} at {args.hidden}-unit LSTMs and "
                f"embeddings, latent 32, {args.epochs} epochs, {args.seeds} seeds, NLL from {args.iw_samples} "
                "importance samples; PTB as experiments/ptb_table.py splits it (train ptb.valid.txt), 6,000 words",
                f"1 torch thread per training, {args.workers} at once"]
    table = markdown_table(["Corpus", "Condition", "ε", "Seed", "Smallest spread", "Dims below √ε at the end",
                            "First validation with one", "Test KL", "AU", "NLL"], rows)
    path = write_results("bn_epsilon", "\n".join([header("When BatchNorm's ε switches BN-VAE off", settings),
                                                   "## Every run", "", table, "",
                                                   f"![The smallest spread of μ per validation]({plot.name})", ""]))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
