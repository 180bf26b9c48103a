"""Vocabulary, special token ids and the data error type (the leaf module of `models.data`)."""
from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")


class DataError(ValueError):
    """A corpus file is missing, empty or unusable; the message names the file."""


class Vocab:
    """Word <-> id map with the four specials first (ids PAD, BOS, EOS, UNK)."""

    def __init__(self, words: Iterable[str]):
        self.itos: list[str] = list(SPECIALS)
        for word in words:
            if word not in SPECIALS:
                self.itos.append(word)
        self.stoi: dict[str, int] = {w: i for i, w in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("vocabulary words must be unique")
        # Text may spell `<unk>` literally (PTB does) and must map to UNK; a literal <pad>, <s>
        # or </s> inside a sentence would corrupt padding and sentence boundaries, so they map
        # to UNK too.
        self._text_ids = dict(self.stoi)
        for word in SPECIALS:
            self._text_ids[word] = UNK

    @classmethod
    def from_counts(cls, counts: Counter, max_vocab: int | None = None, min_count: int = 1) -> "Vocab":
        """Words by decreasing count, ties by first occurrence (a Counter keeps insertion order
        and `sorted` is stable), dropping words seen fewer than `min_count` times, then keeping
        the `max_vocab` most frequent (specials not counted)."""
        ranked = sorted((w for w, c in counts.items() if c >= min_count and w not in SPECIALS),
                        key=lambda w: -counts[w])
        return cls(ranked[:max_vocab] if max_vocab is not None else ranked)

    def __len__(self) -> int:
        return len(self.itos)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos

    def encode(self, words: Sequence[str]) -> list[int]:
        """Ids of `words` (no <s>/</s> added); unknown words become UNK."""
        lookup = self._text_ids
        return [lookup.get(w, UNK) for w in words]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[int(i)] for i in ids]
