"""The joint sweep against single-method sweeps at equal compute. search_spaces/joint.yaml
searches the method itself, with combinations no paper tried; each of its entries alone is a
single-method sweep with the same ranges and the same shared parameters (pooling, encoder lr
ratio). Every sweep runs the same trials and epochs, over seeds, on the synthetic corpus and on
PTB; successive halving stops a different share of each sweep's trials, so `sweeps compare`'s
equalise counts every sweep of a corpus to about the smallest one's trial-epochs before ranking.
Reports per corpus the hypervolumes with bootstrap intervals, the joint sweep minus each
single-method sweep and minus the best of them, and the joint trials on the combined front,
marking the combinations no paper tried. Writes docs/results/joint_vs_single.md and
joint_vs_single_CORPUS.png; each finished sweep's trials go to joint_vs_single_runs.jsonl at
once, so an interrupted run continues with the sweeps it lacks."""
from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import yaml

from experiments.ptb_table import data_setting, split_test
from experiments.report import REPO, RESULTS, markdown_table, header, repo_path, write_results
from sweeps import cli, tracking
from sweeps.analysis import compare, pareto, trial_table
from sweeps.errors import UserError

JOINT = REPO / "search_spaces" / "joint.yaml"
RUNS = RESULTS / "joint_vs_single_runs.jsonl"
TRIED_WITH_POOLING = ("vae", "anneal")
"""The only methods the four papers ran with a pooling encoder: Long et al. §5.3 (every model
with linear KL annealing) and §5.5 (Table 3: max pooling without it). Pooling with any other
method is a combination none of them reports."""
MACHINE_KEYS = ("data.cache_dir", "data.train", "data.valid", "data.test")


def spaces(joint: dict, methods: list[str], fixed: dict, budget: dict) -> dict[str, dict]:
    """The joint space restricted to METHODS, and each of its entries as a space of its own."""
    shared = {"fixed": {**fixed, **joint.get("fixed", {})}, **budget}
    out = {"joint": {**shared, "params": joint.get("params", {}),
                     "methods": {m: joint["methods"][m] for m in methods}}}
    for method in methods:
        entry = joint["methods"][method] or {}
        out[method] = {**shared, "method": entry.get("preset", method),
                       "fixed": {**shared["fixed"], **entry.get("fixed", {})},
                       "params": {**joint.get("params", {}), **entry.get("params", {})}}
    return out


def untried(row: dict, joint: dict) -> str:
    """Why a joint trial's configuration is one none of the four papers reports, or '' if one does."""
    entry = joint["methods"].get(row["method"]) or {}
    combined = "preset" in entry
    method = (f"{entry['preset']} + {', '.join(f'{k}={v}' for k, v in entry.get('fixed', {}).items())}"
              if combined else row["method"])
    pooling = row.get("config.model.pooling") or "last"
    if pooling != "last" and row["method"] not in TRIED_WITH_POOLING:
        return f"{method} with {pooling} pooling"
    return method if combined else ""


# -- running --------------------------------------------------------------------------
def run_key(dataset: str, label: str, seed: int, space: dict) -> str:
    """What identifies a sweep across invocations and checkouts: its space less this machine's paths."""
    portable = {**space, "fixed": {k: v for k, v in space["fixed"].items() if k not in MACHINE_KEYS}}
    return hashlib.sha256(json.dumps([dataset, label, seed, portable], sort_keys=True).encode()).hexdigest()[:10]


def load_runs() -> dict[str, dict]:
    if not RUNS.exists():
        return {}
    return {run["key"]: run for run in map(json.loads, RUNS.read_text().splitlines())}


def run_sweeps(plan: list[dict], work: Path, stored: dict[str, dict]) -> None:
    """Run every planned sweep not yet stored, one after the other, on one tracking server and
    one local Ray; a sweep stopped half-way is resumed (`run --resume-if-exists`)."""
    todo = [p for p in plan if p["key"] not in stored]
    print(f"{len(plan) - len(todo)} of {len(plan)} sweeps already in {RUNS}", flush=True)
    if not todo:
        return
    from sweeps import engine  # Ray: only when a sweep is to run
    (work / "spaces").mkdir(parents=True, exist_ok=True)
    os.chdir(work)  # the sweeps' folders (sweep_results/) go here
    with tracking.local_server(str(work)) as server, engine.local_ray(), RUNS.open("a") as out:
        uri = server.ready()
        for item in todo:
            space_file = work / "spaces" / f"{item['name']}.yaml"
            space_file.write_text(yaml.safe_dump(item["space"], sort_keys=False))
            print(f"== {item['name']}", flush=True)
            code = cli.main(["run", str(space_file), "--name", item["name"], "--seed", str(item["seed"]),
                             "--tracking-uri", uri, "--resume-if-exists"])
            if code not in (0, 1):  # 1: every trial failed, a result too; else interrupted
                raise SystemExit(f"sweep {item['name']} stopped (exit {code}); run again to continue")
            with tracking.open_store(uri) as store:
                table = compare.load(store, [item["name"]])[item["name"]]
            record = {**{k: item[k] for k in ("key", "dataset", "label", "seed", "name")},
                      "trials": [{k: v for k, v in row.items() if k.removeprefix("config.") not in MACHINE_KEYS}
                                 for row in table.to_pylist()]}  # in start order; no paths of this machine
            out.write(json.dumps(record) + "\n")
            out.flush()
            stored[item["key"]] = record


def trials_table(rows: list[dict]) -> pa.Table:
    """A stored sweep's trials back as a trial table (its leading columns typed as the schema's)."""
    table = pa.Table.from_pylist(rows)
    for field in trial_table.SCHEMA:
        if field.name in table.column_names:
            table = table.set_column(table.column_names.index(field.name), field.name,
                                     table[field.name].cast(field.type))
    return table


# -- the report -----------------------------------------------------------------------
def interval(values: tuple[float, float]) -> str:
    return f"[{values[0]:.2f}, {values[1]:.2f}]"


def difference_line(joint_hv: list[float], other: str, other_hv: list[float]) -> list[str]:
    if len(joint_hv) < 2 or len(other_hv) < 2:
        return [other, f"{np.mean(joint_hv) - np.mean(other_hv):+.2f}", "–", "one seed: no interval"]
    low, high = compare.bootstrap_interval(np.array(joint_hv), np.array(other_hv))
    verdict = "no clear difference" if low <= 0 <= high else ("joint better" if low > 0 else "joint worse")
    return [other, f"{np.mean(joint_hv) - np.mean(other_hv):+.2f}", interval((low, high)), verdict]


def corpus_section(dataset: str, records: list[dict], joint: dict, tolerance: float) -> str:
    tables = {r["name"]: trials_table(r["trials"]) for r in records}
    groups = {r["name"]: r["label"] for r in records}
    try:
        result = compare.compare(tables, groups, budget="trial-epochs", tolerance=tolerance, equalise=True)
    except UserError as err:
        return f"## {dataset}\n\nNot ranked: {err}\n"
    plot = RESULTS / f"joint_vs_single_{dataset}.png"
    compare.plot(result, str(plot))
    by_group = {g.name: g for g in result.groups}
    seeds = {r["name"]: r["seed"] for r in records}
    rows = []
    for group in result.groups:
        sweeps = [s for s in result.sweeps if s.group == group.name]
        rows.append([group.name, " / ".join(f"{s.hypervolume:.2f}" for s in sorted(sweeps, key=lambda s: seeds[s.name])),
                     f"{group.mean:.2f}", interval(group.interval) if group.interval else "–",
                     " / ".join(f"{s.spent('trial-epochs'):g}" for s in sweeps),
                     " / ".join(f"{s.completed}" for s in sweeps),
                     f"{sum(s.spent('wall-time') for s in sweeps):.0f}"])
    parts = [f"## {dataset}", "",
             f"Every sweep counted to the trial nearest {result.equalised_to:g} trial-epochs (the smallest "
             f"sweep's), in start order; reference point NLL {result.reference.nll:.2f} (the worst of all these sweeps' "
             "counted trials), AU 0.", "",
             markdown_table(["Sweep", "HV per seed", "Mean HV", "95% interval", "Trial-epochs counted",
                             "Completed", "Wall (s, all seeds)"], rows), ""]
    if "joint" in by_group:
        singles = [g for g in result.groups if g.name != "joint"]
        best = max(singles, key=lambda g: g.mean)
        diffs = [difference_line(by_group["joint"].hypervolumes, g.name, g.hypervolumes) for g in singles]
        diffs.append([f"best single-method sweep ({best.name}, chosen after the fact)",
                      *difference_line(by_group["joint"].hypervolumes, best.name, best.hypervolumes)[1:]])
        parts += ["Joint minus each single-method sweep (mean hypervolume; 95% bootstrap interval, each side "
                  "resampled over its seeds):", "",
                  markdown_table(["Against", "Joint − it", "95% interval", "Verdict"], diffs), ""]
        parts += [combined_front(result, seeds, joint), ""]
    parts += [f"![Fronts of every sweep on {dataset}]({plot.name})", ""]
    return "\n".join(parts)


def combined_front(result: compare.Comparison, seeds: dict[str, int], joint: dict) -> str:
    """The front of every counted trial of the corpus, and the joint sweep's trials on it."""
    rows = [dict(r, sweep_label=s.group, seed=seeds[s.name]) for s in result.sweeps
            for r in s.trials.to_pylist() if r["status"] == "completed"
            and all(np.isfinite(r[m]) for m, _ in (compare.NLL, compare.AU))]
    mask = pareto.pareto_mask(np.array([[r[compare.NLL[0]], r[compare.AU[0]]] for r in rows]),
                              [compare.NLL[1], compare.AU[1]])
    on_front = sorted((r for r, keep in zip(rows, mask) if keep), key=lambda r: r[compare.NLL[0]])
    counts = ", ".join(f"{label} {sum(r['sweep_label'] == label for r in on_front)}"
                       for label in dict.fromkeys(r["sweep_label"] for r in rows))
    table = [[r["sweep_label"], str(r["seed"]), r["method"], f"{r[compare.NLL[0]]:.2f}", f"{r[compare.AU[0]]:.0f}",
              ", ".join(f"{k}={_short(r.get(f'config.{k}'))}" for k in searched(joint, r)),
              (untried(r, joint) or "no") if r["sweep_label"] == "joint" else "–"]
             for r in on_front]
    return "\n".join([f"Combined front of all sweeps' counted trials: {len(on_front)} trials ({counts}).", "",
                      markdown_table(["Sweep", "Seed", "Method", "NLL", "AU", "Configuration", "Untried combination"],
                                     table)])


def searched(joint: dict, row: dict) -> list[str]:
    """The keys a trial's sweep searched: the shared parameters and its method entry's."""
    label = row["method"] if row["sweep_label"] == "joint" else row["sweep_label"]
    return [*joint.get("params", {}), *((joint["methods"].get(label) or {}).get("params", {}))]


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


# -- main -----------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", default="synthetic,ptb", help="comma-separated: synthetic, ptb")
    parser.add_argument("--methods", help="entries of joint.yaml to compare (default: all); the joint sweep "
                                          "searches these, and each runs alone")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1: each sweep's sampler and training seed")
    parser.add_argument("--trials", type=int, default=24, help="trials per sweep (the budget; the same for all)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs per trial at most (the budget; the same for all)")
    parser.add_argument("--max-concurrent", type=int, default=2, help="trials at a time, 1 CPU each")
    parser.add_argument("--tolerance", type=float, default=0.25,
                        help="largest relative difference of the counted trial-epochs still ranked: counting "
                             "stops at the trial boundary nearest the budget, so up to half a trial's epochs")
    parser.add_argument("--sentences", type=int, default=2000, help="synthetic corpus size, split 80/10/10")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data" / "ptb",
                        help="folder with ptb.valid.txt and ptb.test.txt")
    parser.add_argument("--max-vocab", type=int, default=2000, help="PTB: most frequent training words kept")
    parser.add_argument("--hidden", type=int, default=32, help="LSTM hidden and embedding size")
    parser.add_argument("--latent-dim", type=int, default=8)
    parser.add_argument("--iw-samples", type=int, default=10, help="importance samples for the test NLL")
    parser.add_argument("--work-dir", type=Path, default=REPO / ".cache" / "experiments" / "joint_vs_single",
                        help="the sweeps' MLflow store and Tune folders, kept so that a stopped sweep resumes")
    parser.add_argument("--report-only", action="store_true", help="write the report from the stored sweeps")
    args = parser.parse_args(argv)
    joint = yaml.safe_load(JOINT.read_text())
    methods = args.methods.split(",") if args.methods else list(joint["methods"])
    datasets = args.datasets.split(",")
    if unknown := set(methods) - set(joint["methods"]):
        parser.error(f"--methods: not entries of {repo_path(JOINT)}: {', '.join(sorted(unknown))}")
    if unknown := set(datasets) - {"synthetic", "ptb"}:
        parser.error(f"--datasets: unknown {', '.join(sorted(unknown))}")
    work = args.work_dir.resolve()
    model = {f"model.{k}": args.hidden for k in ("enc_emb_dim", "enc_hidden", "dec_emb_dim", "dec_hidden")}
    common = {**model, "model.latent_dim": args.latent_dim, "data.batch_size": 32,
              "eval.iw_samples": args.iw_samples, "eval.iw_batch": args.iw_samples,
              "data.cache_dir": str(work / "cache")}
    corpora = {"synthetic": {**common, "data.synthetic_sentences": args.sentences}}
    if "ptb" in datasets:
        # The files' paths are no part of a sweep's key: reporting needs none of them.
        paths = ({split: "" for split in ("train", "valid", "test")} if args.report_only
                 else split_test(args.data_dir, work / "ptb"))
        corpora["ptb"] = {**common, "profile": "ptb", "data.name": "ptb", "data.max_vocab": args.max_vocab,
                          **{f"data.{split}": path for split, path in paths.items()}}
    budget = {"trials": args.trials, "epochs": args.epochs, "max_concurrent": args.max_concurrent,
              "resources": {"cpus": 1, "gpus": 0}}
    plan = []
    for dataset in datasets:
        for seed in range(args.seeds):  # seed-major: whole seeds finish first
            for label, space in spaces(joint, methods, corpora[dataset], budget).items():
                key = run_key(dataset, label, seed, space)
                plan.append({"key": key, "dataset": dataset, "label": label, "seed": seed, "space": space,
                             "name": f"{dataset}-{label}-s{seed}-{key[:6]}"})
    stored = load_runs()
    if not args.report_only:
        run_sweeps(plan, work, stored)
    sections = [corpus_section(d, [stored[p["key"]] for p in plan if p["dataset"] == d and p["key"] in stored],
                               joint, args.tolerance) for d in datasets]
    settings = [
        f"Sweeps: the joint space of `{repo_path(JOINT)}` restricted to the entries {', '.join(methods)}, and "
        f"each entry alone; every sweep {args.trials} trials of at most {args.epochs} epochs (successive "
        f"halving as `sweeps run` does), {args.max_concurrent} at a time, seeds 0..{args.seeds - 1} "
        "(each sweep's sampler and training seed)",
        f"Scale: LSTMs of {args.hidden} units and embeddings, latent {args.latent_dim}, batch 32, NLL from "
        f"{args.iw_samples} importance samples; synthetic corpus of {args.sentences} sentences"
        + (f"; {data_setting(args.data_dir, args.max_vocab)}" if "ptb" in datasets else ""),
        *(["Report written from the sweeps stored in `docs/results/joint_vs_single_runs.jsonl` (--report-only); "
           "the same command without --report-only ran them"] if args.report_only else []),
        f"Compared with `sweeps compare`'s analysis (`sweeps/analysis/compare.py`): equal trial-epochs by "
        f"counting each sweep to the trial nearest the smallest sweep's, tolerance {args.tolerance:.0%}; hypervolume of "
        "(test NLL min, AU max) against (worst NLL, AU 0); 95% percentile bootstrap intervals over seeds",
    ]
    path = write_results("joint_vs_single", "\n".join([
        header("The joint sweep against single-method sweeps at equal trial-epochs", settings), *sections]))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
