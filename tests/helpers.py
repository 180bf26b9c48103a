"""What several test modules share: tiny configurations and search spaces, the sweep's runs as
MLflow holds them, sweeps logged with exact values (no training), the CLI as a subprocess (to
its end, or a driver the test interrupts), and process look-ups."""
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from models.config import merge
from sweeps import tracking

REPO = Path(__file__).resolve().parents[1]
LR = {"train.lr": {"type": "float", "low": 0.05, "high": 1.0, "log": True}}
"""A search space's `params:` with one log-scaled learning rate."""


def tiny_config(cache_dir, **sections) -> dict:
    """A config that trains in about a second on a CPU: small corpus, tiny LSTMs."""
    base = {
        # One thread: on a shared 2-core machine tiny models run many times faster so.
        "threads": 1,
        "data": {"synthetic_sentences": 400, "batch_size": 32, "cache_dir": str(cache_dir)},
        "model": {"enc_emb_dim": 8, "enc_hidden": 8, "dec_emb_dim": 8, "dec_hidden": 8, "latent_dim": 2},
        "train": {"max_epochs": 2},
        "eval": {"iw_samples": 5, "iw_batch": 5}}
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
def tiny_fixed(cache_dir) -> dict:
    """tiny_config as a search space's dotted `fixed:` values: the epochs are the space's (or
    --epochs), the threads the trial's CPUs."""
    return {k: v for k, v in tracking.flatten(tiny_config(cache_dir)).items() if k not in ("threads", "train.max_epochs")}


def write_space(path: Path, params: dict, **top) -> str:
    """A search space of tiny trials at PATH (its corpus cached beside it): PARAMS searched, TOP
    its other top-level keys, whose `fixed` goes over the tiny values."""
    fixed = {**tiny_fixed(path.parent / "cache"), **top.pop("fixed", {})}
    path.write_text(yaml.safe_dump({"method": "vae", "fixed": fixed, "params": params, **top}))
    return str(path)


def sweep_runs(client, name: str):
    """(parent run, child runs) of sweep NAME."""
    runs = tracking.load_runs(client.tracking_uri, name)
    parents = [r for r in runs if tracking.PARENT_TAG not in r.data.tags]
    assert len(parents) == 1
    return parents[0], [r for r in runs if tracking.PARENT_TAG in r.data.tags]


def epochs_logged(client, run) -> list[int]:
    """The epochs of RUN's validation loss, in order."""
    return [m.step for m in sorted(client.get_metric_history(run.info.run_id, "val/neg_elbo"), key=lambda m: m.step)]


def artifacts(client, run, path=None) -> set[str]:
    return {a.path for a in client.list_artifacts(run.info.run_id, path)}


def sweeps_cli(*args: str, cwd=REPO, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m sweeps ARGS` in a fresh interpreter that imports this checkout; ENV, if given,
    is its whole environment."""
    return subprocess.run([sys.executable, "-m", "sweeps", *args], cwd=cwd, capture_output=True, text=True,
                          env=env or {**os.environ, "PYTHONPATH": str(REPO)}, timeout=timeout)


class Driver:
    """`python -m sweeps ARGS` run from CWD in its own session, so that the test can find what it
    leaves; its output read as it comes (a full pipe would block it). ENV adds to the environment."""

    def __init__(self, cwd: Path, *args: str, env: dict | None = None):
        self.proc = subprocess.Popen([sys.executable, "-m", "sweeps", *args], cwd=cwd,
                                     env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self.pid = self.proc.pid
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self.reader.start()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, ready, what: str) -> None:
        """Poll READY() while the driver runs. No clock: a first server start alone may take
        minutes on a busy machine, and a driver gives up by itself (tracking.server.START_S)."""
        while not ready():
            assert self.proc.poll() is None, f"the sweep ended before {what}:\n{self.output[-3000:]}"
            time.sleep(0.1)

    def wait(self) -> int:
        code = self.proc.wait()
        self.reader.join()
        return code

    def kill(self) -> None:
        """What the driver's session still runs: Ray's processes after a driver killed hard; a
        safety net otherwise, for the tests check first that nothing is left."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.wait()


def processes_naming(text: str) -> list[int]:
    """Processes whose command line holds TEXT: a store's path, a Ray temp folder."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text.encode() in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


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
