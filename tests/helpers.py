"""Tiny configurations and process look-ups shared by the tests."""
from pathlib import Path

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


def session_pids(session: int) -> list[int]:
    """The live processes of a session (its leader's pid): what a test kills of what it started."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids
