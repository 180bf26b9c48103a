"""`sweeps submit | status | logs | stop`: sweeps as Ray Jobs on a running cluster.

Every Ray Jobs API call of the project lives here. `submit` sends `python -m sweeps run`
to the cluster's dashboard address with this checkout as the job's working directory;
the driver runs on the head node, joins the cluster (see tune_adapter.local_ray) and
Tune spreads the trials over every node with free resources.

A sweep is never run twice at once. Its jobs carry the sweep name in their metadata and
their submission id is the name and attempt number, so two submits racing each other
ask for the same id and Ray refuses the second. A sweep whose last job stopped or failed
is resumed (`sweeps resume NAME`) by the next submit under its name.

The four commands share this module (cli maps each command name to a module);
`add_arguments` and `main` tell them apart by the command's name.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import time
from pathlib import Path

from sweeps.cli import run
from sweeps.errors import UserError
from sweeps.cli.options import overrides_from_args

HELP = "Ray Jobs on a cluster: submit a sweep, or show the status or logs of a job, or stop it"
REPO_ROOT = Path(__file__).resolve().parents[2]
EXCLUDES = [".venv", ".cache", "mlartifacts", "mlflow.db", "sweep_results", "runs", "docs/results", ".git",
            "__pycache__", "*.egg-info", ".pytest_cache"]
"""Left out of the working directory sent with a job: environments, caches and results."""
SWEEP_KEY = "sweep"
"""Job metadata key holding the sweep name."""
# `sweeps stop` interrupts the driver like Ctrl-C, so Tune saves its state and the parent run
# is ended as KILLED, within this many seconds before Ray kills it (Ray's default: SIGTERM, 3 s).
STOP_ENV = {"RAY_JOB_STOP_SIGNAL": "SIGINT", "RAY_JOB_STOP_WAIT_TIME_S": "60"}
USER_ERROR_EXIT = 2
"""Exit status of a driver that refused its input and started nothing (see cli)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    command = parser.prog.split()[-1]
    parser.description = DESCRIPTIONS[command]
    parser.add_argument("--address", default=os.environ.get("RAY_API_SERVER_ADDRESS", "http://127.0.0.1:8265"),
                        help="the cluster's dashboard, http://HEAD:8265 (default: $RAY_API_SERVER_ADDRESS, "
                             "else http://127.0.0.1:8265 as forwarded by `ray dashboard cluster.yaml`)")
    if command == "submit":  # the job runs `sweeps run`: the same options, checked here first
        parser.add_argument("--storage", default=os.environ.get(run.STORAGE_ENV),
                            help=f"directory on storage every node shares for Tune's state and checkpoints "
                                 f"(default: ${run.STORAGE_ENV} here, else the cluster's own)")
        recorder = _Recorder(parser)
        run.add_arguments(recorder)
        parser.set_defaults(_run_actions=recorder.actions)
    else:
        parser.add_argument("job", help="job id, as printed by `sweeps submit`")
    if command == "logs":
        parser.add_argument("--follow", action="store_true", help="keep printing until the job ends")


class _Recorder:
    """Passes `add_argument` calls to a parser and keeps the actions, to forward their values."""

    def __init__(self, parser: argparse.ArgumentParser):
        self.parser, self.actions = parser, []

    def add_argument(self, *names, **options):
        action = self.parser.add_argument(*names, **options)
        self.actions.append(action)
        return action


def main(args: argparse.Namespace) -> int:
    return {"submit": submit, "status": status, "logs": logs, "stop": stop}[args.command](args)


def _client(address: str):
    from ray.job_submission import JobSubmissionClient
    try:
        return JobSubmissionClient(address)
    except Exception as err:  # ConnectionError, or Ray's authentication error, with its advice
        raise UserError(f"cannot reach the Ray cluster at {address}: {err}") from None


def _call(what: str, function, *args):
    try:
        return function(*args)
    except RuntimeError as err:  # the dashboard's answer, e.g. an unknown job id
        raise UserError(f"{what}: {str(err).strip().splitlines()[-1]}") from None


def submit(args: argparse.Namespace) -> int:
    run.load(args.space)  # a bad space is refused here, not in the job's logs
    overrides_from_args(args)
    space = Path(args.space).resolve()
    if not space.is_relative_to(REPO_ROOT):
        raise UserError(f"{args.space}: the space file must be inside {REPO_ROOT}, which the job ships")
    if args.storage and not os.path.isabs(args.storage):
        raise UserError(f"--storage {args.storage!r}: give an absolute path, as the cluster's nodes mount it")
    name = run.sweep_name(args.space, args.name)
    client = _client(args.address)
    jobs = [j for j in client.list_jobs() if (j.metadata or {}).get(SWEEP_KEY) == name]
    running = [j for j in jobs if not j.status.is_terminal()]
    if running:
        job = running[0].submission_id
        raise UserError(f"sweep {name!r} is already {running[0].status.value.lower()} as job {job}: "
                        f"follow it with `python -m sweeps logs {job} --follow` or stop it with "
                        f"`python -m sweeps stop {job}`")
    if any(j.status.value == "SUCCEEDED" for j in jobs):
        raise UserError(f"sweep {name!r} already finished on this cluster; choose another --name")
    tracking = ["--tracking-uri", args.tracking_uri] if args.tracking_uri else []
    if any(j.driver_exit_code != USER_ERROR_EXIT for j in jobs):  # it started, then stopped or failed
        command = ["python", "-m", "sweeps", "resume", name, *tracking]
        print(f"sweep {name!r} was stopped; its next job resumes it with the settings it started with")
    else:
        command = ["python", "-m", "sweeps", "run", str(space.relative_to(REPO_ROOT)), "--name", name,
                   *_forwarded(args, skip={"space", "name"})]
    env = {**STOP_ENV, **({run.STORAGE_ENV: args.storage} if args.storage else {})}
    submission_id = f"sweep-{name}-{len(jobs) + 1}"
    try:
        job_id = client.submit_job(entrypoint=shlex.join(command), submission_id=submission_id,
                                   runtime_env={"working_dir": str(REPO_ROOT), "excludes": EXCLUDES,
                                                "env_vars": env},
                                   metadata={SWEEP_KEY: name})
    except RuntimeError as err:
        if "already exists" in str(err):  # another submit of this sweep got there first
            raise UserError(f"sweep {name!r} was submitted at the same moment as job {submission_id}: "
                            f"follow it with `python -m sweeps logs {submission_id} --follow`") from None
        raise UserError(f"submitting sweep {name!r}: {str(err).strip().splitlines()[-1]}") from None
    print(job_id)
    print(f"follow it: python -m sweeps logs {job_id} --follow --address {args.address}")
    return 0


def _forwarded(args: argparse.Namespace, skip: set[str]) -> list[str]:
    """The run options given on this command line, as `sweeps run` arguments."""
    out = []
    for action in args._run_actions:
        value = getattr(args, action.dest)
        if action.dest in skip or value is None or value == action.default:
            continue
        for item in value if isinstance(value, list) else [value]:
            out += [action.option_strings[0], str(item)]
    return out


def status(args: argparse.Namespace) -> int:
    info = _call(f"job {args.job}", _client(args.address).get_job_info, args.job)
    print(f"job {args.job}: {info.status.value}" + (f" (sweep {info.metadata[SWEEP_KEY]})"
                                                       if SWEEP_KEY in (info.metadata or {}) else ""))
    print(f"  entrypoint: {info.entrypoint}")
    if info.start_time:
        print(f"  started:    {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(info.start_time / 1000))}")
    if info.end_time:
        print(f"  ended:      {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(info.end_time / 1000))}")
    if info.message and info.status.is_terminal():
        print(f"  message:    {info.message.strip().splitlines()[0]}")
    return 0


def logs(args: argparse.Namespace) -> int:
    client = _client(args.address)
    if not args.follow:
        print(_call(f"job {args.job}", client.get_job_logs, args.job), end="")
        return 0
    _call(f"job {args.job}", client.get_job_status, args.job)  # an unknown job: one line, not a trace

    async def follow() -> None:
        async for lines in client.tail_job_logs(args.job):
            print(lines, end="", flush=True)

    asyncio.run(follow())
    final = client.get_job_status(args.job)
    print(f"job {args.job}: {final.value}")
    return 0 if final.value == "SUCCEEDED" else 1


def stop(args: argparse.Namespace) -> int:
    client = _client(args.address)
    if not _call(f"job {args.job}", client.stop_job, args.job):
        print(f"job {args.job} had already ended: {client.get_job_status(args.job).value}")
        return 0
    print(f"stopping job {args.job}; submitting its sweep again under the same --name resumes it")
    return 0


DESCRIPTIONS = {
    "submit": "submit a sweep as a Ray Job: `sweeps run SPACE` on the cluster, this checkout as its working "
              "directory; prints the job id. A sweep name already running is refused; one that stopped is resumed.",
    "status": "show the status of a submitted job",
    "logs": "print a submitted job's output (--follow: until it ends)",
    "stop": "stop a submitted job (the sweep's trials are saved; submit it again to resume)",
}
