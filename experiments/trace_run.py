"""One preset at He et al.'s synthetic settings (profile `synthetic`, latent 32), traced: a line per
validation with the validation −ELBO, KL, MI and AU, the spread of the raw posterior means and
the posterior standard deviation, the gradient norm before clipping and the share of updates
clipped, Scale-VAE's median factor f̄ and aggressive mode's state, then the test metrics. The quick way to watch a method escape or fall into
collapse, e.g. `python -m experiments.trace_run scale --epochs 4 --set methods.scale.f_epo=2`."""
from __future__ import annotations

import argparse

import torch

from experiments.runs import method_config
from models import metrics, train
from models.config import ConfigError, set_dotted
from sweeps.cli.options import parse_assignment  # the --set syntax of `sweeps train`


def posterior_spread(loop) -> str:
    """Medians over latent dimensions, on the validation split: Std[μ_d] over sentences (what AU
    thresholds, and what Scale-VAE divides des_std by) and the posterior's σ_d."""
    model, was_training = loop.model, loop.model.training
    model.eval()
    with torch.no_grad():
        mu, logvar = metrics.posteriors(model, loop.corpus.valid, batch_size=256, device=loop.device)
    model.train(was_training)
    return f"Std[mu] {mu.std(0).median():.2e}  sigma {(0.5 * logvar).exp().median():.3f}"


def line(report) -> str:
    m = report.metrics
    spread = posterior_spread(report.loop) if report.loop.is_vae else ""
    return (f"validation {report.validation:>3} (update {report.loop.step:>6}, {m['epoch_time']:5.0f}s)  "
            f"val -ELBO {m['val/neg_elbo']:.2f}  KL {m['val/kl']:.2f}  MI {m['val/mi']:.3f}  AU {m['val/au']:.0f}  "
            f"{spread}  |grad| {m['train/grad_norm']:.2f} clipped {m['train/clipped']:.2f}  "
            f"f {m.get('train/scale_factor', 1.0):.3g}  aggressive {m.get('train/aggressive', '-')}  "
            f"inner {m.get('train/inner_steps', '-')}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("method", help="a preset (models/presets.py)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    base = {"threads": 1, "device": "cpu", "seed": args.seed, "train": {"max_epochs": args.epochs},
            "eval": {"iw_samples": 50, "iw_batch": 50}}
    sets: dict = {}
    for text in args.overrides:
        try:
            set_dotted(sets, *parse_assignment(text))
        except ConfigError as err:
            parser.error(str(err))
    config = method_config(args.method, base, overrides={args.method: sets})  # --set over the preset
    result = train(config, on_epoch=lambda r: print(line(r), flush=True))
    test = result["test"]
    print(f"test (50 IW samples): NLL {test['nll']:.2f}  KL {test['kl']:.2f}  MI {test['mi']:.3f}  "
          f"AU {test['au']:.0f}  wall {result['wall_time']:.0f}s", flush=True)


if __name__ == "__main__":
    main()
