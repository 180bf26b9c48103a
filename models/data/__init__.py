"""Datasets every trial trains on: He et al.'s synthetic corpus and line corpora (one sentence
per line), with a vocabulary, cached tokenisation and length-grouped batching."""
from models.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "models.data.batching": ("Batch", "Corpus", "Split"),
    "models.data.corpus": ("load_corpus",),
    "models.data.synthetic": ("SyntheticGenerator", "SyntheticSpec"),
    "models.data.vocab": ("BOS", "EOS", "PAD", "SPECIALS", "UNK", "DataError", "Vocab"),
})
