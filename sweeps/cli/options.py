"""Options several commands share: the config options (--set, --dataset, --profile, --epochs, --seed; train,
run, confirm), --config files (train, confirm) and --tracking-uri (the analysis commands)."""
from __future__ import annotations

import argparse

import yaml

from models.config import ConfigError


def add_tracking_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tracking-uri", help="MLflow tracking server (default: $MLFLOW_TRACKING_URI, "
                                               "else a local server over ./mlflow.db)")


def add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="fix a dotted config key, e.g. --set kl.free_bits.lam=5 (value parsed as YAML)")
    parser.add_argument("--dataset", help="'synthetic' or a prefix P reading P.train.txt, P.valid.txt, P.test.txt")
    parser.add_argument("--profile", help="the papers' sizes for a corpus: auto (default: by the corpus's "
                                          "name), none, synthetic, ptb, yahoo, yelp (models/profiles.py)")
    parser.add_argument("--epochs", type=int, help="cap on training epochs (train.max_epochs)")
    parser.add_argument("--seed", type=int, help="random seed")


def parse_assignment(text: str) -> tuple[str, object]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {text!r}: value is not valid YAML ({err.problem})") from err
    return key.strip(), value


def overrides_from_args(args: argparse.Namespace) -> dict[str, object]:
    """Dotted config keys set by the shared options, in the order they apply."""
    out: dict[str, object] = {}
    if args.dataset:
        out["data.name"] = args.dataset
    if args.profile:
        out["profile"] = args.profile
    if args.epochs is not None:
        out["train.max_epochs"] = args.epochs
    if args.seed is not None:
        out["seed"] = args.seed
    for text in args.overrides:
        key, value = parse_assignment(text)
        out[key] = value
    return out


def read_config_file(path: str) -> dict:
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh) or {}
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror})") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config sections")
    return data
