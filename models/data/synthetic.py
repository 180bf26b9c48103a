"""He et al. (2019) App. B.1 synthetic corpus: sentences sampled from an LSTM conditioned on a
2-D latent drawn from a four-component Gaussian mixture. Generated once per parameter set and
cached as Parquet."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import nn

from models.data.batching import Corpus, Split
from models.data.vocab import DataError, SPECIALS, Vocab

FORMAT_VERSION = 1
"""Bump when generation or the file layout changes, so stale caches are regenerated."""


@dataclass(frozen=True)
class SyntheticSpec:
    """Every parameter of the generation; all of them key the cache (App. B.1 values)."""

    sentences: int = 20000
    seed: int = 0
    vocab_size: int = 1000
    length: int = 10
    hidden: int = 100
    emb_dim: int = 100
    mean: float = 2.0
    """Component means are (±mean, ±mean), unit variance, equal weights."""
    lstm_init: float = 1.0
    z_out_init: float = 5.0
    chunk: int = 4096
    """Sentences sampled at once; part of the key because it orders the random draws."""

    def key(self) -> str:
        text = json.dumps({**dataclasses.asdict(self), "format": FORMAT_VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class SyntheticGenerator(nn.Module):
    """The App. B.1 generator: a 1-layer LSTM whose initial state is an affine map of z and whose
    output layer sees [h_t; z]."""

    def __init__(self, spec: SyntheticSpec, generator: torch.Generator):
        super().__init__()
        self.spec = spec
        # One extra embedding row is the start symbol fed at step 0, so every one of the
        # `length` words is sampled from the z-conditioned LSTM (the paper leaves this open).
        self.embed = nn.Embedding(spec.vocab_size + 1, spec.emb_dim)
        self.lstm = nn.LSTMCell(spec.emb_dim, spec.hidden)
        self.init_state = nn.Linear(2, spec.hidden)
        # No bias: the words' marginal frequencies come from the LSTM and z, as in He et al.'s
        # generator; columns [:hidden] read h_t, columns [hidden:] read z.
        self.out = nn.Linear(spec.hidden + 2, spec.vocab_size, bias=False)
        with torch.no_grad():
            # App. B.1: LSTM parameters U(-1, 1); the z -> vocabulary weights U(-5, 5) so that z
            # strongly shapes the sentences (the authors' released script uses U(-3, 3); we follow
            # the paper's text). The embedding, the z -> state map and the
            # h -> vocabulary weights are also U(-1, 1), as in the authors' generator.
            for param in self.parameters():
                param.uniform_(-spec.lstm_init, spec.lstm_init, generator=generator)
            self.out.weight[:, spec.hidden:].uniform_(-spec.z_out_init, spec.z_out_init,
                                                      generator=generator)

    @torch.no_grad()
    def sample(self, z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """z (B, 2) -> word ids (B, length) in [0, vocab_size), sampled (not argmax)."""
        # The affine map of z gives the cell state, and h0 = tanh(c0) keeps h0 in the range an
        # LSTM's hidden state can take (the authors' generator does the same).
        c = self.init_state(z)
        h = torch.tanh(c)
        word = torch.full((z.size(0),), self.spec.vocab_size, dtype=torch.long)  # start symbol
        words = []
        for _ in range(self.spec.length):
            h, c = self.lstm(self.embed(word), (h, c))
            logits = self.out(torch.cat([h, z], dim=1))  # (B, V)
            # Gumbel-max: argmax(logits + Gumbel noise) is an exact sample of softmax(logits),
            # and several times faster on CPU than torch.multinomial.
            neg_gumbel = torch.rand(logits.shape, generator=generator).clamp_(min=1e-20).log_().neg_().log_()
            word = logits.sub_(neg_gumbel).argmax(dim=1)  # logits - log(-log U) = logits + Gumbel
            words.append(word)
        return torch.stack(words, dim=1)


def sample_latents(spec: SyntheticSpec, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n draws of z from the mixture: (z (n, 2), component (n,))."""
    means = spec.mean * torch.tensor([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
    component = torch.randint(0, 4, (n,), generator=generator)
    z = means[component] + torch.randn(n, 2, generator=generator)
    return z, component


def generate(spec: SyntheticSpec) -> pa.Table:
    """All sentences, with their z and component; on CPU in float32 from `spec.seed`."""
    generator = torch.Generator().manual_seed(spec.seed)
    model = SyntheticGenerator(spec, generator)
    words, latents, components = [], [], []
    for start in range(0, spec.sentences, spec.chunk):
        z, component = sample_latents(spec, min(spec.chunk, spec.sentences - start), generator)
        words.append(model.sample(z, generator))
        latents.append(z)
        components.append(component)
    ids = (torch.cat(words) + len(SPECIALS)).to(torch.int32).numpy()  # generator word k is vocab id 4 + k
    z = torch.cat(latents).numpy()
    offsets = np.arange(0, ids.size + 1, spec.length, dtype=np.int32)
    return pa.table({
        "ids": pa.ListArray.from_arrays(offsets, ids.reshape(-1)),
        "z1": z[:, 0], "z2": z[:, 1],
        "component": torch.cat(components).to(torch.int8).numpy(),
    })


def synthetic_vocab(spec: SyntheticSpec) -> Vocab:
    """The specials, then the generator's words "w0" .. "w{V-1}" (all of them, even those never
    sampled, so the vocabulary is the paper's 1,000 words whatever the sample)."""
    return Vocab(f"w{k}" for k in range(spec.vocab_size))


def load_synthetic(sentences: int, seed: int, cache_dir: str) -> Corpus:
    """The App. B.1 corpus split 80/10/10 in generation order (the paper's 16k/2k/2k)."""
    if sentences < 10:
        raise DataError(f"data.synthetic_sentences: need at least 10 to split 80/10/10, got {sentences}")
    spec = SyntheticSpec(sentences=sentences, seed=seed)
    path = Path(cache_dir) / f"synthetic-{spec.key()}.parquet"
    if not path.exists():
        write_atomic(path, lambda tmp: pq.write_table(generate(spec), tmp))
    table = pq.read_table(path)
    ids_col = table.column("ids").combine_chunks()
    ids = ids_col.values.to_numpy()
    offsets = ids_col.offsets.to_numpy()
    latents = np.stack([table.column("z1").to_numpy(), table.column("z2").to_numpy()], axis=1)
    components = table.column("component").to_numpy()
    n_train, n_valid = sentences * 8 // 10, sentences // 10
    bounds = {"train": (0, n_train), "valid": (n_train, n_train + n_valid),
              "test": (n_train + n_valid, sentences)}
    splits = {name: Split(name, "synthetic", ids, offsets[lo:hi + 1], latents=latents[lo:hi],
                          components=components[lo:hi])
              for name, (lo, hi) in bounds.items()}
    return Corpus(synthetic_vocab(spec), **splits)


def write_atomic(path: Path, write) -> None:
    """`write(tmp_path)` then rename onto `path`: concurrent trials may build the same cache,
    and a reader must never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
