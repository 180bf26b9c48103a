"""Sweeps as Ray Jobs on a running cluster: every Ray Jobs API call of the project.

A job runs `python -m sweeps run` (or `resume`) on the head node with this checkout as
its working directory; the driver joins the cluster (engine.local_ray) and Tune spreads
the trials over every node with free resources.

A sweep is never run twice at once. Its jobs carry the sweep name in their metadata and
their submission id is the name and attempt number, so two submits racing each other
ask for the same id and Ray refuses the second (and the driver's claim on the sweep's
folder refuses a second driver however it was started). A sweep whose last job stopped or
failed is submitted again under its name; the job's driver resumes it if an earlier job
got as far as starting it (the sweep's folder on shared storage says so), else runs it.
"""
from __future__ import annotations

import asyncio
import os
import shlex
import tempfile
import time
from pathlib import Path
from secrets import token_hex

from sweeps.errors import UserError, redact

REPO_ROOT = Path(__file__).resolve().parents[2]
EXCLUDES = [".venv", ".cache", "mlartifacts", "mlflow.db", "sweep_results", "runs", "docs/results", ".git",
            "__pycache__", "*.egg-info", ".pytest_cache"]
"""Left out of the working directory sent with a job: environments, caches and results."""
SWEEP_KEY = "sweep"
"""Job metadata key holding the sweep name."""
SECRETS_DIR = "sweeps_job_secrets"
"""A job's secrets travel as files of a directory of this name, one of the job's py_modules: Ray
unpacks it on every node that runs the job's driver or workers, into a folder on their Python
path, keeping each file readable by the nodes' user alone. The job's description, which the
dashboard and the Jobs API show to anyone with access to the cluster, shows only a package URI,
whose hash a random salt in the directory makes useless for guessing."""
# `sweeps stop` interrupts the driver like Ctrl-C, so Tune saves its state and the parent run
# is ended as KILLED, within this many seconds before Ray kills it (Ray's default: SIGTERM, 3 s).
STOP_ENV = {"RAY_JOB_STOP_SIGNAL": "SIGINT", "RAY_JOB_STOP_WAIT_TIME_S": "60"}


class Jobs:
    """The Ray Jobs of the cluster whose dashboard is at ADDRESS (http://127.0.0.1:8265 through
    `ray dashboard cluster.yaml`)."""

    def __init__(self, address: str):
        from ray.job_submission import JobSubmissionClient
        self.address = address
        try:
            self.client = JobSubmissionClient(address)
        except Exception as err:  # ConnectionError, or Ray's authentication error, with its advice
            raise UserError(f"cannot reach the Ray cluster at {address}: {err}") from None

    def _call(self, job: str, function, *args):
        try:
            return function(job, *args)
        except RuntimeError as err:  # the dashboard's answer, e.g. an unknown job id
            raise UserError(f"job {job}: {str(err).strip().splitlines()[-1]}") from None

    def next_job(self, name: str) -> tuple[str, int]:
        """The submission id of the sweep NAME's next job, and how many jobs it had before
        (each stopped or failed); UserError if one is pending or running, or one finished it."""
        jobs = [j for j in self.client.list_jobs() if (j.metadata or {}).get(SWEEP_KEY) == name]
        running = [j for j in jobs if not j.status.is_terminal()]
        if running:
            job = running[0].submission_id
            raise UserError(f"sweep {name!r} is already {running[0].status.value.lower()} as job {job}: "
                            f"follow it with `python -m sweeps logs {job} --follow` or stop it with "
                            f"`python -m sweeps stop {job}`")
        if any(j.status.value == "SUCCEEDED" for j in jobs):
            raise UserError(f"sweep {name!r} already finished on this cluster; choose another --name")
        return f"sweep-{name}-{len(jobs) + 1}", len(jobs)

    def submit(self, name: str, submission_id: str, arguments: list[str], env: dict[str, str],
               secrets: dict[str, str] | None = None) -> str:
        """Submit `python -m sweeps ARGUMENTS` for the sweep NAME, with ENV in its environment and
        SECRETS (file name -> text) as files at `secret_path(name)`; return the job id."""
        runtime_env = {"working_dir": str(REPO_ROOT), "excludes": EXCLUDES, "env_vars": {**STOP_ENV, **env}}
        try:
            with tempfile.TemporaryDirectory() as tmp:
                if secrets:  # uploaded by submit_job, before the folder goes
                    runtime_env["py_modules"] = [_secrets_dir(tmp, secrets)]
                return self.client.submit_job(entrypoint=shlex.join(["python", "-m", "sweeps", *arguments]),
                                              submission_id=submission_id, runtime_env=runtime_env,
                                              metadata={SWEEP_KEY: name})
        except RuntimeError as err:
            if "already exists" in str(err):  # another submit of this sweep got there first
                raise UserError(f"sweep {name!r} was submitted at the same moment as job {submission_id}: "
                                f"follow it with `python -m sweeps logs {submission_id} --follow`") from None
            raise UserError(f"submitting sweep {name!r}: {str(err).strip().splitlines()[-1]}") from None

    def describe(self, job: str) -> str:
        info = self._call(job, self.client.get_job_info)
        lines = [f"job {job}: {info.status.value}" + (f" (sweep {info.metadata[SWEEP_KEY]})"
                                                      if SWEEP_KEY in (info.metadata or {}) else ""),
                 f"  entrypoint: {redact(info.entrypoint)}"]
        if info.start_time:
            lines.append(f"  started:    {_clock(info.start_time)}")
        if info.end_time:
            lines.append(f"  ended:      {_clock(info.end_time)}")
        if info.message and info.status.is_terminal():
            lines.append(f"  message:    {info.message.strip().splitlines()[0]}")
        return "\n".join(lines)

    def logs(self, job: str) -> str:
        return self._call(job, self.client.get_job_logs)

    def follow(self, job: str) -> str:
        """Print the job's output until it ends; return its final status."""
        self._call(job, self.client.get_job_status)  # an unknown job: one line, not a trace

        async def tail() -> None:
            async for lines in self.client.tail_job_logs(job):
                print(lines, end="", flush=True)

        asyncio.run(tail())
        return self.client.get_job_status(job).value

    def stop(self, job: str) -> str | None:
        """Stop the job; None if it was running, else the status it had already ended with."""
        if self._call(job, self.client.stop_job):
            return None
        return self.client.get_job_status(job).value


def secret_path(name: str) -> str:
    """Where the job's secret file NAME is, relative to a folder of its Python path."""
    return f"{SECRETS_DIR}/{name}"


def _secrets_dir(parent: str, secrets: dict[str, str]) -> str:
    """SECRETS as owner-only files of a new SECRETS_DIR in PARENT, beside a random salt."""
    folder = os.path.join(parent, SECRETS_DIR)
    os.mkdir(folder, mode=0o700)
    for name, text in {**secrets, "salt": token_hex(32)}.items():
        with open(os.open(os.path.join(folder, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
            file.write(text)
    return folder


def _clock(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))
