"""Long et al. §3.1 and §5.2 on He et al.'s synthetic corpus: does pooling disperse the encoder's
features, and does the dispersion reach the posterior? For last-state and max-pooled encoders
(presets vae + linear annealing, pool-max), after every validation: the mean pairwise cosine
similarity of encoder features (Long et al. Table 3), the spread of the posterior means
(mean over dimensions of Std_x[μ]), the validation MI and AU. Writes
docs/results/pooling_dispersion.md and pooling_dispersion.png."""
from __future__ import annotations

import argparse
import tempfile

import matplotlib.pyplot as plt

from experiments.report import RESULTS, header, markdown_table, write_results
from experiments.runs import method_config, scale_args
from models import metrics, train
from models.resolve import parse_config
from models.loop import Loop

# The same KL schedule for both (Long et al. §5 anneal every model): only the feature differs.
RUNS = {"last (anneal)": "anneal", "max pooling (pool-max)": "pool-max"}


def dispersion(loop: Loop, split) -> dict[str, float]:
    """Feature cosine similarity and the mean spread of μ over `split` (raw posterior means)."""
    batch = loop.cfg.data.batch_size
    mu, _ = metrics.posteriors(loop.model, split, batch_size=batch, device=loop.device)
    return {"cosine": metrics.feature_cosine_similarity(loop.model, split, batch_size=batch, device=loop.device),
            "std_mu": mu.std(0).mean().item()}


def run(label: str, preset: str, base: dict) -> list[dict]:
    config = method_config(preset, base)
    initial = Loop(parse_config(config))  # seeded as the run, so this is its initial model
    split = initial.corpus.valid.head(1000)
    rows = [{"step": 0, **dispersion(initial, split), "mi": float("nan"), "au": float("nan")}]

    def on_epoch(report):
        rows.append({"step": report.loop.step, **dispersion(report.loop, split),
                     "mi": report.metrics["val/mi"], "au": report.metrics["val/au"]})
        print(f"{label:<24} step {rows[-1]['step']:>6}  cosine {rows[-1]['cosine']:.3f}  "
              f"std μ {rows[-1]['std_mu']:.2e}  MI {rows[-1]['mi']:.3f}  AU {rows[-1]['au']:.0f}", flush=True)

    train(config, on_epoch=on_epoch)
    return rows


def figure(results: dict[str, list[dict]], path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for label, rows in results.items():
        steps = [r["step"] for r in rows]
        axes[0].plot(steps, [r["cosine"] for r in rows], marker="o", label=label)
        axes[1].semilogy(steps, [r["std_mu"] for r in rows], marker="o", label=label)
        axes[2].plot(steps[1:], [r["mi"] for r in rows[1:]], marker="o", label=label)
    for ax, title in zip(axes, ["feature cosine similarity", "mean Std_x[μ] (log)", "validation MI (nats)"]):
        ax.set(xlabel="decoder updates", title=title)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sentences", type=int, default=20000, help="synthetic corpus size, split 80/10/10")
    parser.add_argument("--seed", type=int, default=0)
    scale_args(parser, epochs=12, iw_samples=100)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pooling-dispersion-") as cache:
        base = {"seed": args.seed, "threads": 1, "device": "cpu",
                "data": {"synthetic_sentences": args.sentences, "cache_dir": cache},
                "train": {"max_epochs": args.epochs},
                "eval": {"iw_samples": args.iw_samples, "iw_batch": min(args.iw_samples, 100)}}
        results = {label: run(label, preset, base) for label, preset in RUNS.items()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot = RESULTS / "pooling_dispersion.png"
    figure(results, plot)
    rows = [[label, str(r["step"]), f"{r['cosine']:.3f}", f"{r['std_mu']:.2e}", f"{r['mi']:.3f}", f"{r['au']:.0f}"]
            for label, runs in results.items() for r in runs]
    settings = [f"He et al.'s synthetic settings (profile `synthetic`), {args.sentences} sentences (80/10/10), "
                f"latent 32, {args.epochs} epochs, "
                f"seed {args.seed}; features and μ over the first 1000 validation sentences"]
    body = "\n".join(["## Per validation", "",
                      markdown_table(["Encoder", "Updates", "cosine", "mean Std[μ]", "val MI", "val AU"], rows), "",
                      f"![dispersion over training]({plot.name})", ""])
    path = write_results("pooling_dispersion", "\n".join([
        header("Pooling and the dispersion of encoder features (Long et al. §3.1, §5.2)", settings), body]))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
