"""The tracking store under a research group's load: SQLite against PostgreSQL.

    python benchmarks/tracking_load.py [--trials 24] [--concurrent 8] [--nodes 2] [--backends sqlite,postgresql]

The issue's size is `--trials 200 --concurrent 32`; the defaults finish in minutes on a 2-core
machine. For each backend, in turn: a fresh Ray cluster of NODES nodes on this machine
(tests/test_cluster.py's `Node`: `ray start` on loopback, token authentication, each node with
CPUS_PER_NODE CPUs), the tracking server as the cluster's head runs it (`sweeps server` with
MLflow's basic-auth app; runs and users in SQLite files, or in a PostgreSQL server started here
as tests/postgres.py starts it), a timing proxy in front of that server, and one `sweeps run`
driver joined to the cluster (RAY_ADDRESS), as the nodes' user: TRIALS one-epoch trials of a
tiny model, CONCURRENT at a time (each with NODES × CPUS_PER_NODE / CONCURRENT CPUs).

Measured: trials per hour over the driver's whole run (Ray's join and the summary included);
the driver process's CPU (share of one core, mean over its run) and peak resident memory; every
request to the tracking server, timed at the proxy (which adds its own few milliseconds, the
same for both backends): count, median and 99th percentile; errors: responses 5xx and 4xx other
than 404 (MLflow answers 404 to a look-up of what does not exist yet), trials not completed,
and lock or deadlock messages in the server's log. Prints a markdown table headed by the
machine and the CPU time other processes took meanwhile.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import http.client
import http.server
import os
import platform
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import yaml
from mlflow import MlflowClient
from mlflow.entities import ViewType

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests/: the cluster's nodes and the PostgreSQL server, as the tests start them
from machine import OtherLoad  # noqa: E402  (benchmarks/machine.py, beside this script)
from sweeps import tracking  # noqa: E402
from tests import postgres as pg  # noqa: E402
from tests.test_cluster import Node  # noqa: E402

TINY = {"data.synthetic_sentences": 400, "model.enc_emb_dim": 8, "model.enc_hidden": 8, "model.dec_emb_dim": 8,
        "model.dec_hidden": 8, "model.latent_dim": 2, "eval.iw_samples": 5, "eval.iw_batch": 5, "threads": 1}
LOCKS = re.compile(r"database is locked|deadlock detected|could not serialize", re.I)


class TimingProxy(http.server.ThreadingHTTPServer):
    """Forwards every request to the tracking server at UPSTREAM and records (seconds, status) of
    each. A new upstream connection per request: one kept alive would be closed by the server
    when idle (uvicorn's keep-alive: 5 s), and the next request on it would fail in the proxy."""
    daemon_threads = True

    def __init__(self, upstream_port: int):
        self.upstream_port, self.timings, self.lock = upstream_port, [], threading.Lock()
        super().__init__(("127.0.0.1", 0), _Forward)


class _Forward(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # clients keep their connections

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        start = time.perf_counter()
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port, timeout=300)
        try:
            upstream.request(self.command, self.path, body=body or None, headers=headers)
            reply = upstream.getresponse()
            data, status = reply.read(), reply.status
        except (OSError, http.client.HTTPException) as err:
            data, status, reply = str(err).encode(), 502, None
        finally:
            upstream.close()
        with self.server.lock:
            self.server.timings.append((time.perf_counter() - start, status))
        self.send_response(status)
        for key, value in (reply.getheaders() if reply else []):
            if key.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _forward

    def log_message(self, *args):
        pass


def _reap() -> None:
    """Collect the exit of Ray's processes, which this process adopts (see main), so that their
    CPU time counts as the benchmark's own and not as another job's."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def _driver_sample(pid: int) -> tuple[float, int]:
    """(CPU seconds so far, resident kB) of process PID."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS:"))
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), rss


def one_backend(backend: str, args: argparse.Namespace, root: Path) -> dict:
    env = {**os.environ, **pg.WORKER, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    with contextlib.ExitStack() as stack:
        postgres = stack.enter_context(pg.postgres_server()) if backend == "postgresql" else None
        port = tracking.free_port()
        server = pg.start_tracking_server(root / "server", root / "artifacts", port, postgres)
        stack.callback(pg.stop, server)
        uri = tracking.Server(f"http://127.0.0.1:{port}", server).ready()
        made = pg.tracking_user(uri)
        assert made.returncode == 0, made.stderr
        proxy = TimingProxy(port)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        stack.callback(proxy.shutdown)

        nodes = []
        stack.callback(lambda: [node.kill() for node in nodes])
        nodes.append(Node(env, "--head", "--port", str(tracking.free_port()), "--include-dashboard", "false",
                          "--ray-client-server-port", str(tracking.free_port()), "--num-cpus", str(args.cpus_per_node)))
        gcs = Path(nodes[0].temp, "ray_current_cluster").read_text().strip()
        for _ in range(args.nodes - 1):
            nodes.append(Node(env, "--address", gcs, "--num-cpus", str(args.cpus_per_node)))

        space = root / "load.yaml"
        space.write_text(yaml.safe_dump({"method": "vae", "fixed": {**TINY, "data.cache_dir": str(root / "cache")},
                                         "params": {"train.lr": {"type": "float", "low": 0.05, "high": 1.0,
                                                                 "log": True}}}))
        name = f"load-{backend}"
        cpus = args.nodes * args.cpus_per_node / args.concurrent
        command = [sys.executable, "-m", "sweeps", "run", str(space), "--name", name, "--trials", str(args.trials),
                   "--max-concurrent", str(args.concurrent), "--cpus-per-trial", f"{cpus:g}", "--epochs", "1",
                   "--tracking-uri", f"http://127.0.0.1:{proxy.server_port}"]
        started = time.monotonic()
        with open(root / "driver.log", "wb") as log:
            driver = subprocess.Popen(command, cwd=root, stdout=log, stderr=subprocess.STDOUT,
                                      env={**env, "RAY_ADDRESS": gcs, "SWEEPS_STORAGE": str(root / "sweeps")})
        peak = cpu = 0
        while driver.poll() is None:
            with contextlib.suppress(OSError, StopIteration):
                cpu, rss = _driver_sample(driver.pid)
                peak = max(peak, rss)
            time.sleep(1)
        wall = time.monotonic() - started
        assert driver.returncode == 0, (root / "driver.log").read_text()[-3000:]

        os.environ.update(pg.WORKER)  # every trial's outcome, read as the nodes' user
        client = MlflowClient(uri)
        runs = client.search_runs([client.get_experiment_by_name(name).experiment_id], run_view_type=ViewType.ALL)
        trials = [r for r in runs if tracking.PARENT_TAG in r.data.tags]
        timings = sorted(seconds for seconds, _ in proxy.timings)
        errors = [status for _, status in proxy.timings if status >= 500 or (400 <= status < 500 and status != 404)]
        log = (root / "server" / "server.log").read_text(errors="replace")
        return {"backend": backend, "trials": len(trials), "wall": wall, "per_hour": len(trials) / wall * 3600,
                "driver_cpu": cpu / wall, "driver_peak_mb": peak / 1024, "requests": len(timings),
                "p50_ms": statistics.median(timings) * 1000,
                "p99_ms": timings[min(len(timings) - 1, int(0.99 * len(timings)))] * 1000,
                "http_errors": ", ".join(f"{n} × {code}" for code, n in sorted(Counter(errors).items())) or "0",
                "not_completed": sum(r.data.tags.get("trial_status") != "completed" for r in trials),
                "lock_messages": len(LOCKS.findall(log))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--concurrent", type=int, default=8)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--cpus-per-node", type=int, default=2, help="CPUs each node declares to Ray")
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    # Ray's daemons, started by `ray start`, become this process's children: their CPU time is ours.
    ctypes.CDLL(None).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
    load = OtherLoad()
    rows = []
    for backend in args.backends.split(","):
        root = Path(tempfile.mkdtemp(prefix=f"load-{backend}-"))
        try:
            rows.append(one_backend(backend, args, root))
        finally:
            _reap()
            shutil.rmtree(root, ignore_errors=True)
        print(rows[-1], flush=True)
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}; "
          f"{args.nodes} Ray nodes of {args.cpus_per_node} CPUs on it, {args.trials} one-epoch trials, "
          f"{args.concurrent} at a time; {load.line()}\n")
    print("| store | trials | trials/hour | driver CPU (one core) | driver peak RSS | requests | p50 | p99 | "
          "HTTP errors | trials not completed | lock messages |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backend']} | {r['trials']} | {r['per_hour']:,.0f} | {r['driver_cpu']:.0%} | "
              f"{r['driver_peak_mb']:,.0f} MB | {r['requests']:,} | {r['p50_ms']:.0f} ms | {r['p99_ms']:.0f} ms | "
              f"{r['http_errors']} | {r['not_completed']} | {r['lock_messages']} |")


if __name__ == "__main__":
    main()
