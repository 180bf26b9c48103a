"""Corpus containers: a `Split` holds tokenised sentences and yields padded `Batch`es."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from models.data.vocab import BOS, EOS, PAD, Vocab


@dataclass
class Batch:
    """`tokens` (B, T): <s> w1 .. wn </s> then PAD; `lengths` (B,): n + 2; `index` (B,): the
    sentences' positions in their split (to look up `Split.latents`); `labels`: one per row
    for labelled corpora, else None."""

    tokens: torch.Tensor
    lengths: torch.Tensor
    index: torch.Tensor
    labels: list[str] | None = None

    @property
    def mask(self) -> torch.Tensor:
        """(B, T) bool, True on real positions (<s>, words and </s>)."""
        positions = torch.arange(self.tokens.size(1), device=self.tokens.device)
        return positions.unsqueeze(0) < self.lengths.unsqueeze(1)

    def to(self, device: torch.device | str) -> "Batch":
        return dataclasses.replace(self, tokens=self.tokens.to(device),
                                   lengths=self.lengths.to(device), index=self.index.to(device))


class Split:
    """Sentences of one split, stored flat: sentence i is `ids[offsets[i]:offsets[i + 1]]`
    (word ids only; <s> and </s> are added when batching).

    `offsets` (N + 1,) may index a larger array shared by all splits; `ids` is kept as this
    split's view of it (no copy, so a memory-mapped file stays mapped) and `offsets` rebased."""

    def __init__(self, name: str, source: str, ids: np.ndarray, offsets: np.ndarray,
                 labels: list[str] | None = None, latents: np.ndarray | None = None,
                 components: np.ndarray | None = None):
        self.name = name
        self.source = source
        """Where the sentences came from (a file path, or `synthetic`), for messages."""
        self.ids = ids[offsets[0]:offsets[-1]]
        self.offsets = (offsets - offsets[0]).astype(np.int64)
        self.labels = labels
        self.latents = latents
        """(N, 2) float32 generating z of each synthetic sentence (He et al. App. B.1); None otherwise."""
        self.components = components
        """(N,) mixture component of each synthetic z; None otherwise."""
        self.lengths = np.diff(offsets).astype(np.int64)
        """(N,) words per sentence, without <s> and </s>."""

    @property
    def num_sentences(self) -> int:
        return len(self.lengths)

    @property
    def num_tokens(self) -> int:
        """Tokens predicted for perplexity: the words plus one </s> per sentence (not <s>)."""
        return int(self.lengths.sum()) + self.num_sentences

    def __len__(self) -> int:
        return self.num_sentences

    def sentence(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i]:self.offsets[i + 1]]

    def head(self, count: int) -> "Split":
        """The first `count` sentences as a split (for quick evaluations and plots)."""
        count = min(count, self.num_sentences)
        cut = (lambda values: None if values is None else values[:count])
        return Split(self.name, self.source, self.ids, self.offsets[:count + 1], cut(self.labels),
                     cut(self.latents), cut(self.components))

    def unk_rate(self, unk_id: int) -> float:
        return float(np.mean(self.ids == unk_id)) if len(self.ids) else 0.0

    def batches(self, batch_size: int, shuffle: bool, generator: torch.Generator | None = None,
                regroup: bool = True) -> Iterator[Batch]:
        """Every sentence exactly once, in batches of similar length.

        Sentences are sorted by length and chunked (so little padding), as in He et al.'s code.
        With `shuffle`, the batch order is shuffled, and with `regroup` too, ties in length are
        first broken by a random permutation, so equal-length batches differ between epochs;
        without it the batches are the same every pass (ties in the split's order), as He et
        al.'s code builds them once (text_data.py). Both draw from `generator`, so a pass is
        deterministic given its state."""
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        n = self.num_sentences
        if shuffle and regroup:
            perm = torch.randperm(n, generator=generator).numpy()
            order = perm[np.argsort(self.lengths[perm], kind="stable")]
        else:
            order = np.argsort(self.lengths, kind="stable")
        chunks = [order[i:i + batch_size] for i in range(0, n, batch_size)]
        if shuffle:
            chunks = [chunks[i] for i in torch.randperm(len(chunks), generator=generator).tolist()]
        for chunk in chunks:
            yield self._collate(chunk)

    def _collate(self, index: np.ndarray) -> Batch:
        words = self.lengths[index]
        lengths = words + 2
        tokens = np.full((len(index), int(lengths.max())), PAD, dtype=np.int64)
        tokens[:, 0] = BOS
        # All rows at once (a per-row loop cost ~1 % of a small model's training step).
        columns = np.arange(tokens.shape[1] - 2)
        real = columns < words[:, None]
        tokens[:, 1:-1][real] = self.ids[(self.offsets[index][:, None] + columns)[real]]
        tokens[np.arange(len(index)), lengths - 1] = EOS
        labels = [self.labels[i] for i in index] if self.labels is not None else None
        return Batch(torch.from_numpy(tokens), torch.from_numpy(lengths),
                     torch.from_numpy(index.astype(np.int64)), labels)


@dataclass
class Corpus:
    vocab: Vocab
    train: Split
    valid: Split
    test: Split

    @property
    def splits(self) -> dict[str, Split]:
        return {"train": self.train, "valid": self.valid, "test": self.test}
