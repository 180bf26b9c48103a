"""The cluster: sweeps as Ray Jobs, and the tracking server the cluster's sweeps share.

Owns every Ray Jobs API call (`jobs`: submit a sweep, never twice at once, resuming one
that stopped; status, logs, stop) and the rule for exposing the shared tracking server
(`server`: beyond this machine, only with MLflow's basic-auth app). cluster.yaml and
docs/cluster.md describe the cluster itself. Imports Ray's job-submission client only
(never Ray Tune: the job's driver runs `sweeps run` on the cluster); of sweeps only `errors`.
"""
from sweeps.cluster.jobs import REPO_ROOT, Jobs, secret_path
from sweeps.cluster.server import BASIC_AUTH, exposure_warning, is_loopback

__all__ = ["BASIC_AUTH", "REPO_ROOT", "Jobs", "exposure_warning", "is_loopback", "secret_path"]
