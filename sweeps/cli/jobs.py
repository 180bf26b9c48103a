"""`sweeps submit | status | logs | stop`: sweeps as Ray Jobs on a running cluster.

`submit` checks what `sweeps run` would check, then sends it to the cluster
(sweeps/cluster/jobs.py) as `sweeps run --resume-if-exists`: a sweep that an earlier job
started is resumed, one that no job got to start (stopped while pending, a failed runtime
environment) is run. The four commands share
this module (cli maps each command name to a module); `add_arguments` and `main` tell them
apart by the command's name.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from sweeps import tracking
from sweeps.cli import run
from sweeps.cli.options import overrides_from_args
from sweeps.cluster import REPO_ROOT, Jobs, secret_path
from sweeps.errors import UserError
from sweeps.record import STORAGE_ENV
from sweeps.space import load_space

HELP = "Ray Jobs on a cluster: submit a sweep, or show the status or logs of a job, or stop it"
CREDENTIALS_FILE = "mlflow-credentials.json"
"""The file a job gets the user and password of its --tracking-uri in (tracking.CREDENTIALS_FILE_ENV)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    command = parser.prog.split()[-1]
    parser.description = DESCRIPTIONS[command]
    parser.add_argument("--address", default=os.environ.get("RAY_API_SERVER_ADDRESS", "http://127.0.0.1:8265"),
                        help="the cluster's dashboard (default: $RAY_API_SERVER_ADDRESS, else http://127.0.0.1:8265 "
                             "as forwarded by `ray dashboard cluster.yaml`; never plain http across a network)")
    if command == "submit":  # the job runs `sweeps run`: the same options, checked here first
        parser.add_argument("--storage", default=os.environ.get(STORAGE_ENV),
                            help=f"directory on storage every node shares for Tune's state and checkpoints "
                                 f"(default: ${STORAGE_ENV} here, else the cluster's own)")
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


def submit(args: argparse.Namespace) -> int:
    run.refuse_searched(load_space(args.space), overrides_from_args(args))  # refused here, not in the job's logs
    space = Path(args.space).resolve()
    if not space.is_relative_to(REPO_ROOT):
        raise UserError(f"{args.space}: the space file must be inside {REPO_ROOT}, which the job ships")
    if args.storage and not os.path.isabs(args.storage):
        raise UserError(f"--storage {args.storage!r}: give an absolute path, as the cluster's nodes mount it")
    env = {STORAGE_ENV: args.storage} if args.storage else {}
    secrets = {}
    if args.tracking_uri:
        # A user:password goes in a file shipped with the job: its entrypoint and environment
        # are shown by `status`, the dashboard and `ps` on the head.
        try:
            args.tracking_uri, credentials = tracking.split_credentials(tracking.check_uri(args.tracking_uri))
        except ValueError as err:
            raise UserError(str(err)) from err
        if credentials:
            secrets[CREDENTIALS_FILE] = tracking.credentials_file_text(credentials)
            env[tracking.CREDENTIALS_FILE_ENV] = secret_path(CREDENTIALS_FILE)
    name = run.sweep_name(args.space, args.name)
    jobs = Jobs(args.address)
    submission_id, earlier = jobs.next_job(name)
    if earlier:
        print(f"sweep {name!r} had {earlier} earlier job(s): this one resumes it with the settings it started "
              "with, or starts it if none got that far")
    # Whether the sweep starts or resumes is decided on the cluster, from its own folder.
    arguments = ["run", str(space.relative_to(REPO_ROOT)), "--name", name, "--resume-if-exists",
                 *_forwarded(args, skip={"space", "name", "resume_if_exists"})]
    job_id = jobs.submit(name, submission_id, arguments, env, secrets)
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
    print(Jobs(args.address).describe(args.job))
    return 0


def logs(args: argparse.Namespace) -> int:
    jobs = Jobs(args.address)
    if not args.follow:
        print(jobs.logs(args.job), end="")
        return 0
    final = jobs.follow(args.job)
    print(f"job {args.job}: {final}")
    return 0 if final == "SUCCEEDED" else 1


def stop(args: argparse.Namespace) -> int:
    ended = Jobs(args.address).stop(args.job)
    if ended:
        print(f"job {args.job} had already ended: {ended}")
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
