"""Tiny configurations shared by the tests."""
from models.config import merge


def tiny_config(cache_dir, **sections) -> dict:
    """A config that trains in about a second on a CPU: small corpus, tiny LSTMs."""
    base = {
        # One thread: on a shared 2-core machine tiny models run many times faster so.
        "threads": 1,
        "data": {"synthetic_sentences": 400, "batch_size": 32, "cache_dir": str(cache_dir)},
        "model": {"enc_emb_dim": 8, "enc_hidden": 8, "dec_emb_dim": 8, "dec_hidden": 8, "latent_dim": 2},
        "train": {"max_epochs": 2},
        "eval": {"iw_samples": 5, "iw_batch": 5},
    }
    return merge(base, sections)
