"""models.data: the synthetic corpus (He et al. App. B.1), line corpora, caching and batching."""
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from models.config import DataConfig
from models.data import (BOS, EOS, PAD, UNK, DataError, Split, SyntheticGenerator, SyntheticSpec,
                         Vocab, load_corpus)
from models.data.synthetic import sample_latents

FIXTURES = Path(__file__).parent / "fixtures"
SMALL = 200


def synthetic(tmp_path, seed=0, sentences=SMALL, cache="cache"):
    return load_corpus(DataConfig(synthetic_sentences=sentences, synthetic_seed=seed,
                                  cache_dir=str(tmp_path / cache)))


def all_sentences(split):
    return [tuple(split.sentence(i)) for i in range(split.num_sentences)]


# --- synthetic corpus -----------------------------------------------------------------------

def test_synthetic_is_deterministic_per_seed(tmp_path):
    a, b = synthetic(tmp_path, cache="a"), synthetic(tmp_path, cache="b")
    c = synthetic(tmp_path, seed=1, cache="c")
    for name in ("train", "valid", "test"):
        assert all_sentences(a.splits[name]) == all_sentences(b.splits[name])
        np.testing.assert_array_equal(a.splits[name].latents, b.splits[name].latents)
    assert all_sentences(a.train) != all_sentences(c.train)
    assert not np.allclose(a.train.latents, c.train.latents)


def test_synthetic_shape_and_vocab(tmp_path):
    corpus = synthetic(tmp_path)
    assert [s.num_sentences for s in corpus.splits.values()] == [160, 20, 20]
    assert len(corpus.vocab) == 4 + 1000
    assert corpus.vocab.itos[:5] == ["<pad>", "<s>", "</s>", "<unk>", "w0"]
    for split in corpus.splits.values():
        assert (split.lengths == 10).all()
        assert split.num_tokens == 11 * split.num_sentences
        assert split.ids.min() >= 4  # generator words never collide with the specials
        assert split.latents.shape == (split.num_sentences, 2)
        assert set(np.unique(split.components)) <= {0, 1, 2, 3}
        batch = next(split.batches(8, shuffle=False))
        assert batch.tokens.shape == (8, 12) and (batch.lengths == 12).all()
    # z drives the words (its vocabulary weights are U(-5, 5)): sentences from the opposite
    # components (-2, -2) and (2, 2) use nearly disjoint words.
    words = corpus.train.ids.reshape(-1, 10)
    hist = [np.bincount(words[corpus.train.components == k].ravel(), minlength=1004) for k in (0, 3)]
    assert 0.5 * np.abs(hist[0] / hist[0].sum() - hist[1] / hist[1].sum()).sum() > 0.9


def test_synthetic_cache_reused_and_keyed_by_parameters(tmp_path):
    synthetic(tmp_path)
    files = list((tmp_path / "cache").glob("synthetic-*.parquet"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    synthetic(tmp_path)
    assert files[0].stat().st_mtime_ns == mtime
    assert len(list((tmp_path / "cache").iterdir())) == 1
    synthetic(tmp_path, seed=3)
    synthetic(tmp_path, sentences=100)
    assert len(list((tmp_path / "cache").glob("synthetic-*.parquet"))) == 3


def test_generator_init_follows_app_b1():
    gen = SyntheticGenerator(SyntheticSpec(), torch.Generator().manual_seed(0))
    for name, param in gen.lstm.named_parameters():
        assert param.abs().max() <= 1.0 and param.abs().max() > 0.95, name
    z_part, h_part = gen.out.weight[:, 100:], gen.out.weight[:, :100]
    assert z_part.shape == (1000, 2) and h_part.shape == (1000, 100)
    assert z_part.abs().max() <= 5.0 and z_part.abs().max() > 4.5
    assert h_part.abs().max() <= 1.0
    assert gen.lstm.hidden_size == 100 and gen.lstm.input_size == 100


def test_latent_mixture_has_four_unit_gaussians():
    z, component = sample_latents(SyntheticSpec(), 8000, torch.Generator().manual_seed(0))
    for k, mean in enumerate([(-2, -2), (-2, 2), (2, -2), (2, 2)]):
        zk = z[component == k]
        assert abs(len(zk) / 8000 - 0.25) < 0.03
        assert torch.allclose(zk.mean(0), torch.tensor(mean, dtype=torch.float32), atol=0.1)
        assert torch.allclose(zk.std(0), torch.ones(2), atol=0.1)


# --- line corpora ---------------------------------------------------------------------------

def copy_fixture(tmp_path, prefix="tiny"):
    for split in ("train", "valid", "test"):
        shutil.copy(FIXTURES / f"{prefix}.{split}.txt", tmp_path / f"{prefix}.{split}.txt")
    return str(tmp_path / prefix)


def lines(tmp_path, train, valid="a\n", test="a\n", **cfg):
    for split, text in (("train", train), ("valid", valid), ("test", test)):
        (tmp_path / f"c.{split}.txt").write_text(text)
    return load_corpus(DataConfig(name=str(tmp_path / "c"), cache_dir=str(tmp_path / "cache"), **cfg))


def test_line_corpus_vocab_order_and_unk(tmp_path):
    corpus = load_corpus(DataConfig(name=str(FIXTURES / "tiny"), cache_dir=str(tmp_path)))
    # By count, ties by first occurrence: the(4) cat sat dog a(2) on mat and end(1).
    assert corpus.vocab.itos == ["<pad>", "<s>", "</s>", "<unk>",
                                 "the", "cat", "sat", "dog", "a", "on", "mat", "and", "end"]
    assert corpus.train.num_sentences == 4  # the blank line is skipped
    assert corpus.train.num_tokens == 6 + 3 + 5 + 2 + 4
    v = corpus.vocab
    assert v.decode(corpus.valid.sentence(0)) == ["the", "<unk>", "sat"]  # "bird" is unseen
    assert list(corpus.valid.sentence(1)) == [UNK, v.stoi["cat"]]  # PTB-style literal <unk>
    assert v.decode(corpus.test.sentence(0)) == "a dog on the mat".split()
    assert corpus.train.labels is None and corpus.train.latents is None


def test_max_vocab_and_min_count(tmp_path):
    text = "a a a b b c c d\nd e\n"
    assert lines(tmp_path, text, max_vocab=2).vocab.itos[4:] == ["a", "b"]
    corpus = lines(tmp_path, text, min_count=2)
    assert corpus.vocab.itos[4:] == ["a", "b", "c", "d"]
    assert corpus.vocab.decode(corpus.train.sentence(1)) == ["d", "<unk>"]
    assert lines(tmp_path, text, min_count=2, max_vocab=3).vocab.itos[4:] == ["a", "b", "c"]
    assert Vocab.from_counts({"x": 1, "<unk>": 9}).itos == ["<pad>", "<s>", "</s>", "<unk>", "x"]


def test_labels_follow_their_sentences(tmp_path):
    corpus = lines(tmp_path, "pos\tgood film\nneg\tbad\n\nneg\tvery bad film indeed\n",
                   valid="pos\tgood\n", test="good film\n")
    assert corpus.train.labels == ["pos", "neg", "neg"]
    assert corpus.valid.labels == ["pos"] and corpus.test.labels is None
    batch = next(corpus.train.batches(3, shuffle=True, generator=torch.Generator().manual_seed(1)))
    assert batch.labels == [corpus.train.labels[i] for i in batch.index.tolist()]
    with pytest.raises(DataError, match=r"c\.train\.txt:2: no label"):
        lines(tmp_path, "pos\tgood\nbad film\n")


def test_cache_reload_is_memory_mapped_and_equal(tmp_path):
    prefix = copy_fixture(tmp_path)
    cfg = DataConfig(name=prefix, cache_dir=str(tmp_path / "cache"))
    fresh = load_corpus(cfg)
    (cache,) = (tmp_path / "cache").glob("*.arrow")
    mtime = cache.stat().st_mtime_ns
    reloaded = load_corpus(cfg)
    assert cache.stat().st_mtime_ns == mtime
    assert reloaded.vocab == fresh.vocab
    for name in ("train", "valid", "test"):
        assert all_sentences(reloaded.splits[name]) == all_sentences(fresh.splits[name])
    assert not reloaded.train.ids.flags.owndata and not reloaded.train.ids.flags.writeable


def test_cache_invalidated_when_content_changes(tmp_path):
    prefix = copy_fixture(tmp_path)
    cfg = DataConfig(name=prefix, cache_dir=str(tmp_path / "cache"))
    assert "zebra" not in load_corpus(cfg).vocab.stoi
    with open(f"{prefix}.train.txt", "a") as f:
        f.write("zebra zebra zebra zebra zebra\n")
    corpus = load_corpus(cfg)
    assert corpus.vocab.itos[4] == "zebra" and corpus.train.num_sentences == 5
    assert len(list((tmp_path / "cache").glob("*.arrow"))) == 2


def test_explicit_paths_override_prefix(tmp_path):
    prefix = copy_fixture(tmp_path)
    (tmp_path / "other.txt").write_text("a dog\n")
    corpus = load_corpus(DataConfig(name=prefix, test=str(tmp_path / "other.txt"), cache_dir=str(tmp_path)))
    assert corpus.test.source.endswith("other.txt") and corpus.test.num_sentences == 1
    with pytest.raises(DataError, match="data.valid"):
        load_corpus(DataConfig(train=f"{prefix}.train.txt", cache_dir=str(tmp_path)))


@pytest.mark.parametrize("content, message", [(None, "file not found"), ("", "file is empty"),
                                              ("\n  \n\t\n", "contains no words")])
def test_bad_files_name_the_file(tmp_path, content, message):
    prefix = copy_fixture(tmp_path)
    bad = Path(f"{prefix}.valid.txt")
    if content is None:
        bad.unlink()
    else:
        bad.write_text(content)
    with pytest.raises(DataError, match=message) as err:
        load_corpus(DataConfig(name=prefix, cache_dir=str(tmp_path / "cache")))
    assert str(bad) in str(err.value)


def test_unseen_words_warn_with_file_and_rate(tmp_path):
    with pytest.warns(UserWarning, match=r"c\.test\.txt: 100% of its words"):
        lines(tmp_path, "a b c\n", valid="a b\n", test="x y z\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lines(tmp_path, "a b c\n", valid="a b\n", test="a b z\n")  # a third unknown is fine


# --- batching -------------------------------------------------------------------------------

def ragged_split(n=103, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 30, size=n)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    ids = rng.integers(4, 50, size=offsets[-1]).astype(np.int32)
    return Split("train", "test", ids, offsets)


def test_every_sentence_once_with_correct_padding():
    split = ragged_split()
    seen = []
    for batch in split.batches(10, shuffle=True, generator=torch.Generator().manual_seed(0)):
        assert batch.tokens.dtype == torch.long and batch.tokens.size(1) == batch.lengths.max()
        mask = batch.mask
        assert mask.dtype == torch.bool and (mask.sum(1) == batch.lengths).all()
        assert (batch.tokens[~mask] == PAD).all() and (batch.tokens[mask] != PAD).all()
        assert (batch.tokens[:, 0] == BOS).all()
        for row, i in enumerate(batch.index.tolist()):
            n = int(batch.lengths[row])
            assert batch.tokens[row, n - 1] == EOS
            assert batch.tokens[row, 1:n - 1].tolist() == split.sentence(i).tolist()
        seen.extend(batch.index.tolist())
    assert sorted(seen) == list(range(split.num_sentences))
    assert split.num_tokens == int(split.lengths.sum()) + 103


def order(split, seed, shuffle=True):
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    return [b.index.tolist() for b in split.batches(10, shuffle=shuffle, generator=gen)]


def test_shuffle_is_deterministic_given_the_generator():
    split = ragged_split()
    assert order(split, 5) == order(split, 5)
    assert order(split, 5) != order(split, 6)
    assert order(split, None, shuffle=False) == order(split, None, shuffle=False)
    # Equal-length sentences change batches between epochs, not just the batch order.
    same = Split("train", "test", np.arange(4, 404, dtype=np.int32), np.arange(0, 401, 4, dtype=np.int32))
    assert {tuple(b) for b in order(same, 1)} != {tuple(b) for b in order(same, 2)}


def test_fixed_batch_order_keeps_the_batches_and_shuffles_their_order():
    # He et al.'s code builds its length-sorted batches once and shuffles their order each epoch.
    same = Split("train", "test", np.arange(4, 404, dtype=np.int32), np.arange(0, 401, 4, dtype=np.int32))
    gen = torch.Generator().manual_seed(0)
    epochs = [[b.index.tolist() for b in same.batches(10, shuffle=True, generator=gen, regroup=False)]
              for _ in range(2)]
    assert {tuple(b) for b in epochs[0]} == {tuple(b) for b in epochs[1]}
    assert epochs[0] != epochs[1] and sorted(i for b in epochs[0] for i in b) == list(range(100))


def test_batches_group_similar_lengths():
    split = ragged_split()
    for shuffle in (False, True):
        spans = sorted((min(split.lengths[b]), max(split.lengths[b])) for b in order(split, 0, shuffle))
        assert all(hi <= next_lo for (_, hi), (next_lo, _) in zip(spans, spans[1:]))
    batch = next(split.batches(4, shuffle=False)).to("cpu")
    assert batch.tokens.device.type == "cpu" and batch.labels is None


def test_head_keeps_the_first_sentences(tmp_path):
    corpus = load_corpus(DataConfig(synthetic_sentences=200, cache_dir=str(tmp_path)))
    head = corpus.test.head(5)
    assert head.num_sentences == 5
    assert all((head.sentence(i) == corpus.test.sentence(i)).all() for i in range(5))
    assert (head.latents == corpus.test.latents[:5]).all()
