"""Datasets every trial trains on: He et al.'s synthetic corpus and line corpora (one sentence
per line), with a vocabulary, cached tokenisation and length-grouped batching."""
from models.data.batching import Batch, Corpus, Split
from models.data.corpus import load_corpus
from models.data.synthetic import SyntheticGenerator, SyntheticSpec
from models.data.vocab import BOS, EOS, PAD, SPECIALS, UNK, DataError, Vocab

__all__ = ["load_corpus", "Corpus", "Split", "Batch", "Vocab", "DataError", "PAD", "BOS", "EOS", "UNK",
           "SPECIALS", "SyntheticGenerator", "SyntheticSpec"]
