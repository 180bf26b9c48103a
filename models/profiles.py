"""Dataset profiles: the model and training sizes the papers use on each corpus.

A config's `profile` picks one; its values sit under everything else (method presets,
config files, --set), so a sweep that relies on defaults trains the papers' model for its
corpus, not one-size defaults. `auto` picks by the corpus: `synthetic` for He et al.'s
synthetic corpus, `ptb`, `yahoo` or `yelp` when the corpus's file name starts with that
word, else `none` (the defaults in models/config.py).
"""
from __future__ import annotations

import copy
from pathlib import Path

from models.config import ConfigError

_DECODER_DROPOUT = {"dec_dropout_in": 0.5, "dec_dropout_out": 0.5}

PROFILES: dict[str, dict] = {
    "none": {},
    # He et al. App. B.1 and their config_synthetic.py: 50-unit LSTMs and embeddings, batch 16,
    # decoder dropout 0.5, 50 epochs.
    "synthetic": {"data": {"batch_size": 16},
                  "model": {"enc_emb_dim": 50, "enc_hidden": 50, "dec_emb_dim": 50, "dec_hidden": 50,
                            **_DECODER_DROPOUT},
                  "train": {"max_epochs": 50}},
    # Li et al. App. A and their config_ptb.py: 256-d embeddings and LSTMs, batch 32, SGD from
    # lr 0.5, at most 100 epochs.
    "ptb": {"data": {"batch_size": 32},
            "model": {"enc_emb_dim": 256, "enc_hidden": 256, "dec_emb_dim": 256, "dec_hidden": 256,
                      **_DECODER_DROPOUT},
            "train": {"lr": 0.5, "max_epochs": 100}},
    # He et al. App. B.2 (after Kim et al. 2018): 512-d embeddings, 1024-unit LSTMs, batch 32,
    # at most 100 epochs (their config_yahoo.py); the same for Yelp.
    "yahoo": {"data": {"batch_size": 32},
              "model": {"enc_emb_dim": 512, "enc_hidden": 1024, "dec_emb_dim": 512, "dec_hidden": 1024,
                        **_DECODER_DROPOUT},
              "train": {"max_epochs": 100}},
}
PROFILES["yelp"] = copy.deepcopy(PROFILES["yahoo"])
# He et al.'s own config_synthetic.py: the `synthetic` sizes with a 2-dimensional latent (the
# `synthetic` profile keeps the default 32 of the text experiments).
PROFILES["synthetic-he"] = {**copy.deepcopy(PROFILES["synthetic"]),
                            "model": {**PROFILES["synthetic"]["model"], "latent_dim": 2}}
# Song et al. §4.4 (their synthetic study): 50-unit LSTMs and embeddings, a 2-dimensional latent,
# and §4.1's optimisation: batch 32, SGD from lr 1.0 halved when the validation loss has not
# improved in 5 epochs (no warm period stated), stopped after 5 halvings or 120 epochs.
PROFILES["synthetic-song"] = {"data": {"batch_size": 32},
                              "model": {"enc_emb_dim": 50, "enc_hidden": 50, "dec_emb_dim": 50, "dec_hidden": 50,
                                        "latent_dim": 2, **_DECODER_DROPOUT},
                              "train": {"lr": 1.0, "patience": 5, "decay_after": 0, "max_decays": 5,
                                        "max_epochs": 120}}

PROFILE_NAMES = ("auto", *PROFILES)


def resolve_profile(data: dict) -> str:
    """The profile a raw config `data` asks for, with `auto` resolved from its corpus."""
    name = data.get("profile", "auto")
    if name not in PROFILE_NAMES:
        raise ConfigError(f"profile: {name!r} is not one of {', '.join(map(repr, PROFILE_NAMES))}")
    if name != "auto":
        return name
    corpus = data.get("data") if isinstance(data.get("data"), dict) else {}
    source = corpus.get("train") or corpus.get("name", "synthetic")
    if source == "synthetic":
        return "synthetic"
    stem = Path(str(source)).name.lower()
    return next((known for known in ("ptb", "yahoo", "yelp") if stem.startswith(known)), "none")


def profile_config(name: str) -> dict:
    """A fresh copy of profile `name`'s partial config."""
    return copy.deepcopy(PROFILES[name])
