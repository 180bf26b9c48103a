"""Tiny configurations, sweeps logged with exact values, and process look-ups shared by the tests."""
from pathlib import Path

import yaml

from models.config import merge
from sweeps import tracking


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


LOGGED_SPACE = {"method": "fb", "fixed": {"data.synthetic_sentences": 400, "model.latent_dim": 2},
                "params": {"kl.free_bits.lam": {"type": "float", "low": 1.0, "high": 9.0},
                           "train.lr": {"type": "float", "low": 0.1, "high": 1.0, "log": True}}}


def log_sweep(uri, tmp: Path, name: str, trials, space=LOGGED_SPACE, dataset="corpora/ptb"):
    """A sweep in the layout `run` writes: parent run with its space, one child run per trial
    (trial, lam, lr, seed, outcome, test/nll, test/au), logged in the order given."""
    space_file = tmp / f"{name}.yaml"
    space_file.write_text(yaml.safe_dump(space))
    experiment, parent = tracking.start_sweep_run(uri, name, {"space.method": space["method"]}, {}, str(space_file))
    for trial_id, lam, lr, seed, outcome, nll, au in trials:
        run = tracking.TrialRun.find_or_create(uri, experiment, parent, trial_id)
        run.start()
        run.log_config(tiny_config(tmp / "cache", seed=seed, data={"name": dataset},
                                   kl={"free_bits": {"kind": "fb", "lam": lam}}, train={"lr": lr}),
                       space["method"], f"arithmetic of {trial_id}")
        epochs = 2 if outcome == "completed" else 1
        assert run.log_epochs({epoch: {"val/neg_elbo": 120.0 - epoch - lam, "val/au": au or 0}
                               for epoch in range(1, epochs + 1)})
        if outcome == "completed":
            run.log_final(epochs, {"test/nll": nll, "test/ppl": nll / 2, "test/neg_elbo": nll + 1,
                                   "test/recon": nll - 2, "test/kl": lam, "test/mi": lam / 2,
                                   "test/au": au, "wall_time": 10.0 + lam, "test_time": 2.0 + lam},
                          f"verdict of {trial_id}")
        run.finish(outcome, "boom" if outcome == "failed" else None)
    tracking.finish_sweep_run(uri, parent, "FINISHED", {})
    return parent


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
