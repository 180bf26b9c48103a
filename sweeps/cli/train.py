"""`sweeps train`: train one configuration and write its metrics, checkpoint, model file and text."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

import yaml

import models
from models.config import merge, set_dotted
from sweeps.cli.options import add_config_options, overrides_from_args, read_config_file

HELP = "train one configuration (a method preset, a config file and overrides)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", default=None, help=f"preset: {', '.join(models.PRESETS)}")
    parser.add_argument("--config", help="YAML config file (e.g. one written by export-best or a trial)")
    add_config_options(parser)
    parser.add_argument("--train", help="training split file (overrides --dataset)")
    parser.add_argument("--valid", help="validation split file")
    parser.add_argument("--test", help="test split file")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--init-from", metavar="FILE", help=f"start from the weights of a model file ({models.MODEL_FILE}; "
                                                             "its vocabulary and architecture must be this config's)")
    parser.add_argument("--out", required=True, help=f"output directory: metrics.json, checkpoint.pt, {models.MODEL_FILE}, "
                                                     f"{models.SAMPLES_FILE}, {models.RECONSTRUCTIONS_FILE}")


def resolve_config(args: argparse.Namespace) -> dict:
    """Preset, then config file, then options: later ones win."""
    config = models.preset_config(args.method) if args.method else {}
    if args.config:
        config = merge(config, read_config_file(args.config))
    overrides = overrides_from_args(args)
    for split in ("train", "valid", "test"):
        if getattr(args, split):
            overrides[f"data.{split}"] = getattr(args, split)
    if args.device:
        overrides["device"] = args.device
    for key, value in overrides.items():
        set_dotted(config, key, value)
    return config


def _print_epoch(report: models.EpochReport) -> None:
    m = report.metrics
    diagnostics = "".join(f"  {k[len('diag/'):]} {v:.3g}" for k, v in m.items() if k.startswith("diag/"))
    print(f"epoch {report.validation:3d}  train loss {m['train/loss']:.3f}  val -elbo {m['val/neg_elbo']:.3f}  "
          f"kl {m['val/kl']:.3f}  mi {m.get('val/mi', float('nan')):.3f}  au {m.get('val/au', 0):.0f}  "
          f"lr {m['lr']:.3g}{diagnostics}  ({m['epoch_time']:.1f}s)", flush=True)


def evaluation_printer(every_s: float = 10.0) -> Callable[[models.EvaluationProgress], None]:
    """`on_test` for a command: a line as the IW-NLL passes a tenth of the test split, at most one
    per `every_s` seconds, so a test of seconds prints none and one of minutes shows its pace."""
    shown = 0.0

    def show(progress: models.EvaluationProgress) -> None:
        nonlocal shown
        if progress.sentences < progress.total and progress.seconds - shown >= every_s:
            shown = progress.seconds
            print(f"testing  IW-NLL {progress.sentences}/{progress.total} sentences  ({progress.seconds:.0f}s)",
                  flush=True)
    return show


def test_line(test: dict[str, float]) -> str:
    return "test  " + "  ".join(f"{k} {v:.3f}" for k, v in test.items())


def main(args: argparse.Namespace) -> int:
    config = resolve_config(args)
    models.parse_config(config)  # refuse bad input before loading any data
    print(f"arithmetic: {models.arithmetic(config)}", flush=True)
    try:
        result = models.train(config, on_epoch=_print_epoch, out_dir=args.out, init_from=args.init_from,
                              on_test=evaluation_printer())
    except models.TrainingDiverged as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(test_line(result["test"]))
    print(f"verdict: {result['verdict']}")
    with open(os.path.join(args.out, "config.yaml"), "w") as fh:
        yaml.safe_dump(result["config"], fh, sort_keys=False)
    print(f"wrote {', '.join(sorted(os.listdir(args.out)))} in {args.out}")
    return 0
