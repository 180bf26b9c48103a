"""How loose Scale-VAE's IW-NLL is, and what it is once the bound is tight (issue 23, item 1).

One Scale-VAE trained on the synthetic corpus (the collapse table's settings, a few epochs), then
its test NLL from k = 100, 1,000 and 10,000 importance samples under both readings of its
proposal (models/nets.py, TextVAE): "trained", N(μ, σ²), whose KL the objective holds, and
"decoder", N(μ, σ²/f²), the input its decoder trained on; each beside its own −ELBO. Both bound
the NLL of the same generative model (z ~ N(0, I), x ~ p(x | f·z)); the lowest is the tightest.
Writes docs/results/scale_nll.md."""
from __future__ import annotations

import argparse
import tempfile

import torch

from experiments.report import header, markdown_table, write_results
from experiments.runs import method_config
from models import metrics
from models.loop import Loop
from models.resolve import parse_config

READINGS = ("trained", "decoder")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=20000, help="synthetic corpus size, split 80/10/10")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--test-sentences", type=int, default=200, help="first test sentences scored")
    parser.add_argument("--samples", default="100,1000,10000", help="k values, comma-separated")
    args = parser.parse_args(argv)
    ks = [int(k) for k in args.samples.split(",")]
    with tempfile.TemporaryDirectory(prefix="scale-nll-") as cache:
        base = {"threads": 1, "device": "cpu", "seed": args.seed, "train": {"max_epochs": args.epochs},
                "data": {"synthetic_sentences": args.sentences, "cache_dir": cache}}
        loop = Loop(parse_config(method_config("scale", base, overrides={"scale": {"methods": {"scale": {"f_epo": 2}}}})))
        loop.run()
        if loop.best_state is not None:
            loop.model.load_state_dict(loop.best_state)
        split = loop.corpus.test.head(args.test_sentences)
        elbo = metrics.elbo_terms(loop.model, split, batch_size=32, device=loop.device)
        rows = []
        for reading in READINGS:
            suffix = "" if reading == "trained" else "_dec"
            for k in ks:
                nll = metrics.iw_nll(loop.model, split, samples=k, samples_per_pass=min(k, 100), batch_size=32,
                                     device=loop.device, reading=reading)[f"nll{suffix}"]
                rows.append([reading, f"{k:,}", f"{nll:.2f}", f"{elbo[f'neg_elbo{suffix}']:.2f}",
                             f"{elbo[f'kl{suffix}']:.2f}"])
                print(" | ".join(rows[-1]), flush=True)
    f = loop.model.latent_scale
    settings = [f"Scale-VAE (preset `scale`, f_epo 2 as the collapse table), seed {args.seed}, {args.epochs} epochs "
                f"on the synthetic corpus ({args.sentences} sentences, latent 32); NLL of the first "
                f"{args.test_sentences} test sentences",
                f"Its factor f: median {f.median().item():.3g}, min {f.min().item():.3g}, max {f.max().item():.3g}; "
                f"{loop.history[-1].get('diag/scale_signal_to_noise', float('nan')):.2g} the decoder's median "
                "signal/noise"]
    table = markdown_table(["proposal (reading)", "k", "IW-NLL", "−ELBO (same proposal)", "KL (same proposal)"], rows)
    path = write_results("scale_nll", "\n".join([header("Scale-VAE: how tight its IW-NLL is", settings),
                                                  "## NLL by proposal and k", "", table, ""]))
    print(f"wrote {path}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
