"""The model file: a trained model in one file, to share, evaluate, sample from or start from.

`model.pt` is a torch file holding a plain dict, read back with `weights_only=True` (no
pickled code runs when a downloaded file is opened):

    format      FORMAT, bumped when the layout changes
    state_dict  the model's parameters and buffers (Scale-VAE's factor f among them), on CPU
    vocab       the vocabulary, every word in id order (specials first)
    config      the resolved training config (models/config.py), as a nested dict

Unlike a checkpoint (`checkpoint.pt`: optimisers, RNG states, the best and the current
weights, for resuming) it holds one set of weights. Files above MAX_BYTES are refused: a
sweep logs one per completed trial.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import torch

from models.config import Config, merge, to_dict

from models.resolve import parse_config
from models.data import Vocab
from models.files import MODEL_FILE, ModelFileError
from models.loop import Loop, EvaluationProgress
from models.methods import build_methods
from models.nets import build_model

FORMAT = 1
MAX_BYTES = 256 * 2**20
"""256 MiB. Float32 weights of the papers' sizes (models/profiles.py): synthetic corpus 0.8 MiB,
PTB (10k words) 34 MiB, Yahoo and Yelp (1024-unit LSTMs, 20k words) 205 MiB."""


@dataclass
class SavedModel:
    model: torch.nn.Module
    """In eval mode, on the device it was loaded to."""
    vocab: Vocab
    config: Config


def model_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def save_model(loop, path: str, limit: int = MAX_BYTES) -> None:
    """Write the loop's current model (after `loop.test()`: the best one) with its vocabulary
    and config; ModelFileError if its weights exceed `limit` bytes."""
    size = model_bytes(loop.model)
    if size > limit:
        raise ModelFileError(f"{path}: the model's weights take {size / 2**20:.0f} MiB, above the "
                             f"{limit / 2**20:.0f} MiB limit of a model file (models.saved.MAX_BYTES)")
    state = {"format": FORMAT, "state_dict": {k: v.detach().cpu() for k, v in loop.model.state_dict().items()},
             "vocab": list(loop.corpus.vocab.itos), "config": to_dict(loop.cfg)}
    tmp = f"{path}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)  # never a torn file where a reader looks


def read_model_file(path: str) -> dict:
    """The file's dict, checked; ModelFileError naming the file otherwise."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path}: is a directory, not a model file") from None
    except Exception as err:  # torch raises several types for a file that is not its own
        raise ModelFileError(f"{path}: not a model file ({type(err).__name__})") from None
    if not isinstance(state, dict) or not {"format", "state_dict", "vocab", "config"} <= set(state):
        raise ModelFileError(f"{path}: not a model file (a training checkpoint? use the run's {MODEL_FILE})")
    if state["format"] != FORMAT:
        raise ModelFileError(f"{path}: model file format {state['format']}, this version reads {FORMAT}")
    return state


def load_model(path: str, device: str | torch.device = "cpu") -> SavedModel:
    """The model of a model file, built as training built it (methods may add layers)."""
    state = read_model_file(path)
    config = parse_config(state["config"])
    vocab = Vocab(state["vocab"])
    model = build_model(config.model, len(vocab))
    for method in build_methods(config.methods):
        method.on_build(model)
    _load_weights(model, state["state_dict"], path)
    return SavedModel(model.to(device).eval(), vocab, config)


def init_weights(loop, path: str) -> None:
    """Start the loop's model from a model file's weights (`train --init-from`); the corpus's
    vocabulary must be the file's, and the architecture the same."""
    state = read_model_file(path)
    vocab = Vocab(state["vocab"])
    if vocab != loop.corpus.vocab:
        raise ModelFileError(f"{path}: its vocabulary ({len(vocab)} words) is not that of "
                             f"{loop.corpus.train.source} ({len(loop.corpus.vocab)} words); give the "
                             f"corpus the model was trained on")
    _load_weights(loop.model, state["state_dict"], path)


def _load_weights(model: torch.nn.Module, state_dict: dict, path: str) -> None:
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as err:  # missing keys or other shapes: another architecture
        detail = str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else str(err)
        raise ModelFileError(f"{path}: its weights do not fit this model ({detail})") from None


def evaluate_model(path: str, overrides: dict | None = None,
                   on_test: Callable[[EvaluationProgress], None] | None = None) -> dict[str, float]:
    """Test metrics of a model file on its own corpus, or on the one `overrides` (a nested
    config dict, e.g. {"data": {"name": PREFIX}}) names: the metrics a trial reports.
    `on_test` sees the evaluation's progress (`Loop.test`)."""
    config = merge(read_model_file(path)["config"], overrides or {})
    loop = Loop(parse_config(config))
    init_weights(loop, path)
    return loop.test(on_test)
