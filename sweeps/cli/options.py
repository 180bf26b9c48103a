"""Options several commands share: the config options (--set, --dataset, --profile, --epochs, --seed;
train, run, confirm), --config files (train, confirm), --tracking-uri and logging what was written
(the analysis commands) and a model given as a file or a trial's run (evaluate, sample)."""
from __future__ import annotations

import argparse
import os
import re

import yaml

import models
from models.config import ConfigError
from sweeps.errors import UserError
from sweeps.space import YamlError, read_yaml
from sweeps.tracking import open_store

RUN_ID = re.compile(r"[0-9a-f]{32}")


def add_tracking_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tracking-uri", help="MLflow tracking server (default: $MLFLOW_TRACKING_URI, "
                                               "else a local server over ./mlflow.db)")


def log_on_parents(store, names: list[str], *paths) -> None:
    """Log what an analysis command wrote under analysis/ on the parent run of every sweep it read."""
    for name in names:
        sweep = store.sweep(name)
        for path in paths:
            store.log_artifact(sweep, str(path))


def add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="fix a dotted config key, e.g. --set kl.free_bits.lam=5 (value parsed as YAML)")
    parser.add_argument("--dataset", help="'synthetic' or a prefix P reading P.train.txt, P.valid.txt, P.test.txt")
    parser.add_argument("--profile", help="the papers' sizes for a corpus: auto (default: by the corpus's "
                                          "name), none, synthetic, synthetic-he, synthetic-song, ptb, yahoo, yelp "
                                          "(models/profiles.py)")
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


OPTION_KEYS = {"dataset": "data.name", "profile": "profile", "epochs": "train.max_epochs", "seed": "seed"}
"""The config key each shared option sets, besides --set."""


def overrides_from_args(args: argparse.Namespace) -> dict[str, object]:
    """Dotted config keys set by the shared options, in the order they apply."""
    out: dict[str, object] = {key: getattr(args, option) for option, key in OPTION_KEYS.items()
                              if getattr(args, option) not in (None, "")}
    for text in args.overrides:
        key, value = parse_assignment(text)
        out[key] = value
    return out


def option_for(key: str) -> str:
    """The option that set dotted KEY, for a message."""
    return next((f"--{option}" for option, set_key in OPTION_KEYS.items() if set_key == key), f"--set {key}")


def read_config_file(path: str) -> dict:
    """A config file (train --config, confirm), read as search spaces are: a repeated key is refused."""
    try:
        data = read_yaml(path) or {}
    except YamlError as err:
        raise ConfigError(str(err)) from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config sections")
    return data


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="RUN_ID_OR_FILE",
                        help=f"a model file ({models.MODEL_FILE} from train --out, or from export-best --with-weights), "
                             "or the MLflow run id of a completed trial, whose model file is fetched")
    add_tracking_option(parser)


def model_file(args: argparse.Namespace, directory: str) -> str:
    """The local path of the model `args.model` names: the file, or the run's model file
    downloaded into DIRECTORY through the tracking server."""
    if os.path.exists(args.model) or not RUN_ID.fullmatch(args.model):
        return args.model  # a missing file is reported by models, naming it
    with open_store(args.tracking_uri) as store:
        local = store.download(args.model, models.MODEL_FILE, directory)
        if local is None:
            raise UserError(f"run {args.model} at {store.uri} has no {models.MODEL_FILE} (not a completed trial?)")
    return local
