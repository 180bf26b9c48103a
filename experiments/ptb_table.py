"""The collapse table on Penn Treebank at CPU scale, with the LSTM-LM's exact NLL as reference
(He et al. Table 1, Li et al. Table 1). Only PTB's validation and test files are at hand: the
models train on ptb.valid.txt, and ptb.test.txt is cut in two by line order, the first half
validating (lr decay, aggressive mode's switch-off) and the second half testing.
Writes docs/results/ptb_table.md and ptb_table_nll_au.png."""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from experiments.report import REPO, RESULTS, comparison_report, header, repo_path, write_results
from experiments.runs import check_methods, compare_methods, length_args, method_args, scale_args

# Aggressive training is by far the longest run: listed early, it starts while the other
# worker trains the rest.
METHODS = ("lm", "vae", "aggressive", "anneal", "beta", "fb", "pool-max", "scale", "pretrain-fb", "bn", "bn-small-eps")

PAPERS = """## What the papers report (PTB, Li et al. Table 1; full training split, 32-d latent)
- LSTM-LM NLL 101.04 (PPL 100.47, Table 10); VAE and VAE + anneal collapse (KL 0.00, AU 0,
  PPL 101.4); aggressive training PPL 99.83 with AU 4, KL 0.93; FB (λ = 3) AU 32, KL 2.96,
  PPL 100.50; FB (λ = 7) AU 32 at a worse PPL (104.06).
- Li et al. Table 3: pretraining + FB gives the best PPL of all; He et al. Table 3 and Long et al.
  Table 2: aggressive training costs 2–4× the basic VAE, pooling and Scale-VAE ≈ 1× (Song et al.
  Table 2).
"""


SPLIT_DIR = REPO / ".cache" / "experiments" / "ptb"
"""Where ptb.test.txt is cut in two by default: a fixed folder, so that a run's config (which
names the files) and so its key in a runs file stay the same across invocations."""


def split_test(data_dir: Path, out_dir: Path) -> dict[str, str]:
    """Data paths: train on ptb.valid.txt; validate on the first half of ptb.test.txt's lines
    and test on the second half (line order, no shuffling: deterministic and easy to check)."""
    for name in ("ptb.valid.txt", "ptb.test.txt"):
        if not (data_dir / name).is_file():
            raise SystemExit(f"error: {data_dir / name} not found; pass --data-dir, the folder "
                             "holding ptb.valid.txt and ptb.test.txt")
    lines = (data_dir / "ptb.test.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    half = len(lines) // 2
    out_dir.mkdir(parents=True, exist_ok=True)
    halves = {"valid": (out_dir / "ptb.test.first-half.txt", lines[:half]),
              "test": (out_dir / "ptb.test.second-half.txt", lines[half:])}
    for path, part in halves.values():
        path.write_text("".join(part), encoding="utf-8")
    return {"train": str(data_dir / "ptb.valid.txt"), **{split: str(path) for split, (path, _) in halves.items()}}


def data_setting(data_dir: Path, max_vocab: int) -> str:
    """The results file's data line: the files by name, their folder relative to the repository."""
    return (f"Data: from `{repo_path(data_dir)}` (--data-dir), train ptb.valid.txt; validation the "
            "first half of ptb.test.txt by line order; test the second half; vocabulary the "
            f"{max_vocab} most frequent training words, the rest <unk>")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data" / "ptb",
                        help="folder with ptb.valid.txt and ptb.test.txt")
    parser.add_argument("--split-dir", type=Path, default=SPLIT_DIR,
                        help="where the two halves of ptb.test.txt are written")
    parser.add_argument("--max-vocab", type=int, default=2000,
                        help="most frequent training words kept (PTB: 10k; the valid file has 6021)")
    parser.add_argument("--emb", type=int, default=32, help="word embedding size (Li et al.: 128)")
    parser.add_argument("--hidden", type=int, default=32, help="LSTM hidden size (Li et al.: 512)")
    parser.add_argument("--latent-dim", type=int, default=8, help="(Li et al.: 32)")
    method_args(parser, METHODS, seeds=1)
    scale_args(parser, epochs=3, iw_samples=10)
    length_args(parser, anneal_epochs=1.5, pretrain_epochs=1)
    args = parser.parse_args(argv)
    check_methods(parser, args)
    paths = split_test(args.data_dir, args.split_dir)
    settings = [
        data_setting(args.data_dir, args.max_vocab),
        f"Scale: LSTM {args.emb}-d embeddings and {args.hidden} hidden units (Li et al.: 128/512), "
        f"latent {args.latent_dim} (papers: 32), otherwise Li et al.'s PTB settings (profile `ptb`: decoder "
        f"dropout 0.5, SGD lr 0.5, batch 32), "
        f"at most {args.epochs} epochs (papers: until the 5th lr decay), {args.seeds} seed(s), NLL from "
        f"{args.iw_samples} importance samples (papers: 500)",
        f"Shortened preset lengths: KL warm-up over {args.anneal_epochs:g} epochs (presets: 10), "
        f"{args.pretrain_epochs} autoencoder epochs for pretrain-fb (preset: 10)",
        f"1 torch thread per training, {args.workers} training(s) at once; the machine was "
        "shared with other jobs, so wall times carry noise",
    ]
    # Fresh tokenisation and pretraining caches per invocation (see collapse_table.py).
    with tempfile.TemporaryDirectory(prefix="ptb-table-") as cache:
        base = {"threads": 1, "device": "cpu", "profile": "ptb",
                "data": {**paths, "name": "ptb", "max_vocab": args.max_vocab,
                         "cache_dir": cache},
                "model": {"enc_emb_dim": args.emb, "enc_hidden": args.hidden, "dec_emb_dim": args.emb,
                          "dec_hidden": args.hidden, "latent_dim": args.latent_dim},
                "train": {"max_epochs": args.epochs},
                # Decoding B × k sentences at once over the whole vocabulary: keep a pass small.
                "eval": {"iw_samples": args.iw_samples, "iw_batch": min(args.iw_samples, 10)}}
        runs = compare_methods(args, base, RESULTS / "ptb_table_runs.jsonl", anneal_epochs=args.anneal_epochs,
                               pretrain_epochs=args.pretrain_epochs)
    body = comparison_report(runs, name="ptb_table", plot_title="PTB (CPU scale): NLL vs AU")
    path = write_results("ptb_table", "\n".join([
        header("Posterior collapse by method on Penn Treebank", settings), body, PAPERS]))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
