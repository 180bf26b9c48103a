"""Typed training configuration: the dataclasses and the plain-data helpers, importing nothing of
`models` (models/resolve.py turns a nested dict into a validated `Config`).

A config is plain data: a nested dict (from YAML, the CLI or a sweep) is turned into these
dataclasses by `from_dict`, which refuses unknown keys and wrong types with a message naming
the dotted key. Every field here is a dotted path a search space may set (`train.lr`,
`kl.free_bits.lam`, `methods.scale.des_std`).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal


class ConfigError(ValueError):
    """A config value is unknown, of the wrong type or out of range."""


@dataclass
class DataConfig:
    name: str = "synthetic"
    """`synthetic` (He et al. App. B.1), or a prefix P reading P.train.txt, P.valid.txt, P.test.txt."""
    train: str | None = None
    """Explicit split files; override the prefix when given."""
    valid: str | None = None
    test: str | None = None
    batch_size: int = 32
    batch_order: Literal["regroup", "fixed"] = "regroup"
    """regroup: each epoch breaks ties in length at random, so its batches differ; fixed: the
    batches are made once and only their order is shuffled each epoch, as in He et al.'s code."""
    max_vocab: int | None = None
    """Keep the most frequent words of the training split (specials not counted)."""
    min_count: int = 1
    cache_dir: str = ".cache/data"
    """Where generated and tokenised corpora are cached (Arrow/Parquet)."""
    synthetic_sentences: int = 20000
    """Synthetic corpus size, split 80/10/10 (the paper's 16k/2k/2k)."""
    synthetic_seed: int = 0
    """Seed of the synthetic generator; independent of the training seed."""


@dataclass
class ModelConfig:
    kind: Literal["vae", "lm"] = "vae"
    """`lm` is the LSTM language model baseline: the decoder without z."""
    enc_emb_dim: int = 50
    enc_hidden: int = 50
    dec_emb_dim: int = 50
    dec_hidden: int = 50
    latent_dim: int = 32
    pooling: Literal["last", "mean", "max", "absmax"] = "last"
    """Encoder feature: last hidden state, or a pooling over time (Long et al. §3.2)."""
    dec_dropout_in: float = 0.0
    dec_dropout_out: float = 0.0
    word_dropout: float = 0.0
    """Probability of replacing a decoder input word by <unk> (Bowman et al.)."""
    kernels: Literal["auto", "torch", "native", "armv8-a", "x86-64-v2", "x86-64-v3", "x86-64-v4"] = "auto"
    """The arithmetic of CPU runs (models/kernels/): `auto` the C kernels where they build, else
    torch's; `torch`; or the C kernels for a build target (`native`, ...), an error where they
    cannot be built. Every target computes the same bits; torch's path agrees to float rounding.
    The environment's MODELS_NATIVE overrides it."""
    output_bias: bool = False
    """Biases on the encoder's output layer (→ μ, log σ²), z → c0 and the vocabulary layer. He et
    al.'s reference code has none: with a bias at U(−0.01, 0.01), |mean μ| dwarfs the spread of μ
    across sentences (≈ 420× against ≈ 8× without)."""


@dataclass
class FreeBitsConfig:
    kind: Literal["none", "fb", "fbp"] = "none"
    """fb: hinge per dimension at lam/latent_dim (Li et al. Eq. 1); fbp: hinge on the total KL."""
    lam: float = 0.0
    """Target rate λ in nats for the whole latent."""


@dataclass
class KLConfig:
    weight: float = 1.0
    """Final KL weight β (β-VAE when < 1)."""
    anneal: Literal["constant", "linear", "cyclical"] = "constant"
    start: float = 0.1
    """Linear warm-up: weight at step 0 (He et al. App. B: 0.1 → 1 over 10 epochs)."""
    epochs: float = 10.0
    """Linear warm-up length in epochs (ignored when `steps` is set)."""
    steps: int | None = None
    """Linear warm-up length in iterations."""
    cycles: int = 4
    """Cyclical schedule: number of cycles over the whole training (Fu et al.)."""
    rise: float = 0.5
    """Cyclical schedule: fraction of each cycle spent increasing the weight."""
    free_bits: FreeBitsConfig = field(default_factory=FreeBitsConfig)


@dataclass
class TrainConfig:
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = 1.0
    """Decoder learning rate (SGD 1.0, no momentum, as He et al.)."""
    enc_lr_ratio: float = 1.0
    """Encoder lr = lr × ratio (He et al. App. F sweeps encoder/decoder lr ratios)."""
    clip_grad: float = 5.0
    max_epochs: int = 30
    patience: int = 2
    """Decay lr after this many validations in a row whose loss rose (He et al. App. B: 2)."""
    decay_after: int = 15
    """No decay in the first this-many validations (He et al.'s code: never before epoch 15)."""
    decay_factor: float = 0.5
    max_decays: int = 5
    """Stop after this many learning-rate decays."""


@dataclass
class EvalConfig:
    iw_samples: int = 500
    """k importance samples for IW-NLL (500 in the papers)."""
    iw_batch: int = 100
    """Samples of each sentence handed to the decoder at once; it scores them in passes of
    `pass_mib`."""
    pass_mib: float | None = None
    """Memory of one evaluation pass of the decoder (IW-NLL, −ELBO, the posterior mean space), in
    MiB: as many (sentence, sample) rows as keep the LSTM's gates and the logits (rows × length ×
    vocabulary) within it, in reused buffers. Changes speed and memory, never a value (beyond
    float rounding). None: 2 per torch thread on a CPU (cache-sized; larger passes run slower
    there), 256 on a GPU."""
    mi_samples: int = 1
    """Samples per sentence for the MI estimate (He et al. Eq. 5)."""
    au_threshold: float = 0.01
    mi_batch: bool = True
    """Also He et al.'s MI estimate, over each minibatch rather than the whole split (`mi_batch`;
    models/metrics.py): the estimator of the papers' tables, at most log(batch size)."""
    val_mi: bool = True
    """Compute MI and AU on the validation split at each validation."""
    every_steps: int | None = None
    """Validate every this-many updates instead of once per epoch. Everything that runs on
    validations (the aggressive switch-off, lr patience and decay_after, ASHA's rungs) then
    means the same number of updates on a corpus of any size; e.g. 1000 ≈ one epoch of He et
    al.'s synthetic corpus (16k sentences, batch 16)."""


@dataclass
class Config:
    seed: int = 0
    device: str = "auto"
    """auto (CUDA when available), cpu, cuda or cuda:N."""
    threads: int = 0
    """torch threads; 0 = the CPUs this process may run on."""
    profile: str = "auto"
    """The papers' sizes for a corpus, under every other value: auto, none, synthetic,
    synthetic-he, synthetic-song, ptb, yahoo, yelp (models/profiles.py)."""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    kl: KLConfig = field(default_factory=KLConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Training-procedure methods by registered name, each with its own parameters."""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against annotation `tp`; ints are accepted where floats are."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} is not {_type_name(tp)}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, choices))}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        return {str(k): dict(v) if isinstance(v, dict) else _bad(f"{key}.{k}", v, "a mapping")
                for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {tp!r} at {key}")


def _bad(key: str, value: Any, expected: str):
    raise ConfigError(f"{key}: expected {expected}, got {value!r}")


def from_dict(cls: type, data: Any, prefix: str = "") -> Any:
    """Build dataclass `cls` from a mapping, refusing unknown keys and wrong types."""
    where = prefix or "config"
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key {_join(prefix, unknown[0])!r}; "
                          f"known keys: {', '.join(sorted(names))}")
    kwargs = {name: _coerce(value, hints[name], _join(prefix, name)) for name, value in data.items()}
    return cls(**kwargs)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def to_dict(cfg: Any) -> dict:
    """Plain nested dict of a config (YAML/JSON-ready)."""
    return dataclasses.asdict(cfg)


def check_ranges(cfg: Config) -> None:
    """ConfigError for a value outside its range (what a type alone cannot say)."""
    positive = {"data.batch_size": cfg.data.batch_size, "model.latent_dim": cfg.model.latent_dim,
                "model.enc_hidden": cfg.model.enc_hidden, "model.dec_hidden": cfg.model.dec_hidden,
                "model.enc_emb_dim": cfg.model.enc_emb_dim, "model.dec_emb_dim": cfg.model.dec_emb_dim,
                "train.lr": cfg.train.lr, "train.max_epochs": cfg.train.max_epochs,
                "train.enc_lr_ratio": cfg.train.enc_lr_ratio, "eval.iw_samples": cfg.eval.iw_samples,
                "eval.iw_batch": cfg.eval.iw_batch, "eval.mi_samples": cfg.eval.mi_samples,
                "data.synthetic_sentences": cfg.data.synthetic_sentences, "train.patience": cfg.train.patience}
    if cfg.eval.every_steps is not None:
        positive["eval.every_steps"] = cfg.eval.every_steps
    if cfg.eval.pass_mib is not None:
        positive["eval.pass_mib"] = cfg.eval.pass_mib
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key}: must be positive, got {value}")
    fractions = {"model.dec_dropout_in": cfg.model.dec_dropout_in,
                 "model.dec_dropout_out": cfg.model.dec_dropout_out,
                 "model.word_dropout": cfg.model.word_dropout, "kl.rise": cfg.kl.rise,
                 "train.decay_factor": cfg.train.decay_factor}
    for key, value in fractions.items():
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{key}: must be in [0, 1], got {value}")
    if cfg.train.decay_after < 0:
        raise ConfigError(f"train.decay_after: must be non-negative, got {cfg.train.decay_after}")
    if cfg.kl.weight < 0 or cfg.kl.start < 0 or cfg.kl.free_bits.lam < 0:
        raise ConfigError("kl: weights and free-bits target must be non-negative")
    if cfg.kl.free_bits.kind != "none" and cfg.kl.free_bits.lam <= 0:
        raise ConfigError("kl.free_bits.lam: must be positive when kl.free_bits.kind is set")


def set_dotted(data: dict, key: str, value: Any) -> None:
    """Set `a.b.c = value` in a nested dict, creating levels as needed."""
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{key}: {part!r} is not a section")
    node[parts[-1]] = value


def merge(base: dict, override: dict) -> dict:
    """Deep-merge `override` into a copy of `base`."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out
