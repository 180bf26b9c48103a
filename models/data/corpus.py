"""`load_corpus`: the synthetic corpus, or a line corpus (Yahoo, Yelp, PTB, SNLI format) tokenised
once and cached as an Arrow IPC file that later loads memory-mapped."""
from __future__ import annotations

import hashlib
import json
import warnings
from collections import Counter
from pathlib import Path

import pyarrow as pa

from models.config import DataConfig
from models.data.batching import Corpus, Split
from models.data.synthetic import load_synthetic, write_atomic
from models.data.vocab import SPECIALS, UNK, DataError, Vocab

FORMAT_VERSION = 1
"""Bump when tokenisation or the file layout changes, so stale caches are rebuilt."""
SPLITS = ("train", "valid", "test")
UNK_WARN_RATE = 0.5
"""Warn when at least this fraction of a valid/test split's words is unknown to the training
vocabulary: the splits are then probably from different corpora."""


def load_corpus(cfg: DataConfig) -> Corpus:
    paths = {s: getattr(cfg, s) for s in SPLITS}
    if cfg.name == "synthetic" and not any(paths.values()):
        return load_synthetic(cfg.synthetic_sentences, cfg.synthetic_seed, cfg.cache_dir)
    for split, path in paths.items():
        if path is None:
            if cfg.name == "synthetic":
                raise DataError(f"data.{split}: no file given; data.train/valid/test must all be set "
                                f"when data.name is 'synthetic' (or set data.name to a file prefix)")
            paths[split] = f"{cfg.name}.{split}.txt"
    corpus = load_lines({s: Path(p) for s, p in paths.items()}, cfg.max_vocab, cfg.min_count, Path(cfg.cache_dir))
    for split in (corpus.valid, corpus.test):
        rate = split.unk_rate(UNK)
        if rate >= UNK_WARN_RATE:
            warnings.warn(f"{split.source}: {rate:.0%} of its words are not in the vocabulary of the "
                          f"training split {corpus.train.source}", stacklevel=2)
    return corpus


def load_lines(paths: dict[str, Path], max_vocab: int | None, min_count: int, cache_dir: Path) -> Corpus:
    """Tokenise the three files, or reload them from the cache keyed by their contents and the
    vocabulary settings."""
    contents = {split: read_file(path) for split, path in paths.items()}
    digest = hashlib.sha256(json.dumps({"format": FORMAT_VERSION, "max_vocab": max_vocab,
                                        "min_count": min_count}).encode())
    for split in SPLITS:
        digest.update(hashlib.sha256(contents[split]).digest())
    cache = cache_dir / f"{paths['train'].name.removesuffix('.txt')}-{digest.hexdigest()[:16]}.arrow"
    if not cache.exists():
        table = tokenise({s: contents[s] for s in SPLITS}, paths, max_vocab, min_count)
        write_atomic(cache, lambda tmp: write_ipc(table, tmp))
    return read_cache(cache, paths)


def read_file(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror})") from None
    if not data:
        raise DataError(f"{path}: file is empty")
    return data


def parse(data: bytes, path: Path) -> tuple[list[list[str]], list[str] | None]:
    """Sentences as word lists, and labels when the file is `label<TAB>text`: that is decided by
    the first sentence, and every later one must then be labelled too. Lines without words are
    skipped: blank lines separate nothing in these corpora and an empty sentence has no text
    to model."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte {err.start})") from None
    sentences, labels = [], None
    for number, line in enumerate(text.splitlines(), 1):
        label, tab, body = line.partition("\t")
        words = body.split() if tab else label.split()
        if not words:
            continue
        if labels is None and not sentences and tab:
            labels = []
        if labels is not None:
            if not tab:
                raise DataError(f"{path}:{number}: no label, but the file's first sentence is "
                                f"labelled (label<TAB>text)")
            labels.append(label.strip())
        elif tab:
            raise DataError(f"{path}:{number}: has a label (label<TAB>text), but the file's first "
                            f"sentence does not")
        sentences.append(words)
    if not sentences:
        raise DataError(f"{path}: contains no words (only blank lines)")
    return sentences, labels


def tokenise(contents: dict[str, bytes], paths: dict[str, Path], max_vocab: int | None,
             min_count: int) -> pa.Table:
    """One table, rows train then valid then test: `ids` list<int32>, `label` string (null when
    unlabelled); the vocabulary, split sizes and source files go in the schema metadata."""
    parsed = {split: parse(contents[split], paths[split]) for split in SPLITS}
    vocab = Vocab.from_counts(Counter(w for sent in parsed["train"][0] for w in sent), max_vocab, min_count)
    ids, labels = [], []
    for sentences, split_labels in parsed.values():
        ids.extend(vocab.encode(sent) for sent in sentences)
        labels.extend(split_labels if split_labels is not None else [None] * len(sentences))
    meta = {"vocab": vocab.itos, "sizes": [len(parsed[s][0]) for s in SPLITS],
            "labelled": [parsed[s][1] is not None for s in SPLITS]}
    return pa.table({"ids": pa.array(ids, type=pa.list_(pa.int32())), "label": pa.array(labels, pa.string())},
                    metadata={"corpus": json.dumps(meta)})


def write_ipc(table: pa.Table, path: str) -> None:
    # A single record batch keeps every column one contiguous buffer, so a reload maps the file
    # and views `ids` as numpy without copying.
    table = table.combine_chunks()
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=max(len(table), 1))


def read_cache(cache: Path, paths: dict[str, Path]) -> Corpus:
    table = pa.ipc.open_file(pa.memory_map(str(cache))).read_all()
    meta = json.loads(table.schema.metadata[b"corpus"])
    ids_col = table.column("ids").combine_chunks()  # one chunk already: zero-copy
    ids, offsets = ids_col.values.to_numpy(), ids_col.offsets.to_numpy()
    splits, start = {}, 0
    for split, size, labelled in zip(SPLITS, meta["sizes"], meta["labelled"]):
        labels = table.column("label").slice(start, size).to_pylist() if labelled else None
        splits[split] = Split(split, str(paths[split]), ids, offsets[start:start + size + 1], labels=labels)
        start += size
    return Corpus(Vocab(meta["vocab"][len(SPECIALS):]), **splits)
