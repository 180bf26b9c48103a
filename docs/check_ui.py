"""Look at a sweep in the MLflow UI as a person would: headless Chromium screenshots.

Not part of CI: it needs Debian's Chromium (`apt-get install chromium`) and a sweep to look
at. Run it from the directory the sweep ran in (the one holding ./mlflow.db), e.g. after
`make demo`:

    .venv/bin/python docs/check_ui.py demo --out ui-check

It serves ./mlflow.db with `python -m sweeps ui` on a free port, checks over MLflow's REST API
that the experiment is tagged as model training and that the runs hold what a sweep logs,
and writes one screenshot per page a researcher opens first, by the links `sweeps ui` prints
(they carry MLflow 3.17's model-training view; see tracking.TRAINING_VIEW):

    0-bare-link.png        the experiment by a link without the query: the view the browser
                           remembers (GenAI traces in a fresh browser)
    1-runs.png             the experiment: the runs table, trials nested under the sweep's run
    2-trial-metrics.png    a completed trial's metric charts
    3-pareto.png           the parent run's Pareto front (importances.png beside it)
    4-reconstructions.png  that trial's reconstructions.txt (samples.txt, model.pt beside it)

Look at them (any image viewer); the script fails only on what it can check without eyes. On
a busy machine charts may still be loading: raise --wait-ms.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KIND = ("mlflow.experimentKind", "custom_model_development")
VIEW = "workflowType=machine_learning"


def api(base: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{base}/api/2.0/mlflow/{path}", data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def artifacts(base: str, run_id: str) -> set[str]:
    listed = api(base, f"artifacts/list?run_id={run_id}")
    return {f["path"] for f in listed.get("files", [])}


def screenshot(url: str, path: Path, wait_ms: int) -> None:
    # --virtual-time-budget lets the React app fetch and render before the picture is taken.
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1440,900", f"--virtual-time-budget={wait_ms}", f"--screenshot={path}", url],
                   check=True, capture_output=True, timeout=180)
    print(f"{path}  <- {url}")


def check(base: str, name: str, out: Path, wait_ms: int) -> None:
    experiment = api(base, f"experiments/get-by-name?experiment_name={urllib.parse.quote(name)}")["experiment"]
    tags = {t["key"]: t["value"] for t in experiment.get("tags", [])}
    assert tags.get(KIND[0]) == KIND[1], f"experiment {name} lacks the tag {KIND[0]}={KIND[1]}: {tags}"
    runs = api(base, "runs/search", {"experiment_ids": [experiment["experiment_id"]], "max_results": 1000})["runs"]
    run_tags = [{t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs]
    parent = next(r for r, t in zip(runs, run_tags) if "mlflow.parentRunId" not in t)
    trial = next(r for r, t in zip(runs, run_tags) if t.get("trial_status") == "completed")
    parent_id, trial_id = parent["info"]["run_id"], trial["info"]["run_id"]
    missing = ({"pareto.png", "importances.png"} - artifacts(base, parent_id),
               {"model.pt", "samples.txt", "reconstructions.txt"} - artifacts(base, trial_id))
    assert not any(missing), f"missing artifacts: parent {missing[0] or '-'}, trial {missing[1] or '-'}"
    page = f"{base}/#/experiments/{experiment['experiment_id']}"
    out.mkdir(parents=True, exist_ok=True)
    for file, path in (("0-bare-link.png", None), ("1-runs.png", ""),
                       ("2-trial-metrics.png", f"/runs/{trial_id}/model-metrics"),
                       ("3-pareto.png", f"/runs/{parent_id}/artifactPath/pareto.png"),
                       ("4-reconstructions.png", f"/runs/{trial_id}/artifactPath/reconstructions.txt")):
        screenshot(page if path is None else f"{page}{path}?{VIEW}", out / file, wait_ms)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="sweep name (its MLflow experiment)")
    parser.add_argument("--out", default="ui-check", help="folder for the screenshots (default: %(default)s)")
    parser.add_argument("--wait-ms", type=int, default=20000, help="rendering time per page (default: %(default)s)")
    args = parser.parse_args()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ui = subprocess.Popen([sys.executable, "-m", "sweeps", "ui", "--port", str(port)], stdout=subprocess.PIPE,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        line = ui.stdout.readline()  # "MLflow UI at URL" once the server answers
        if not line.startswith("MLflow UI at"):
            raise SystemExit(f"sweeps ui did not start: {line or 'no output'}")
        url = urllib.parse.urlsplit(line.split()[3])
        check(f"{url.scheme}://{url.netloc}", args.name, Path(args.out), args.wait_ms)
    finally:
        ui.send_signal(signal.SIGINT)  # `sweeps ui` stops its server on Ctrl-C
        ui.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
