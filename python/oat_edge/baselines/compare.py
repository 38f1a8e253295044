"""The comparison: OAT against the baselines on closed-loop success and act() latency.

    python -m oat_edge.baselines.compare --demos runs/demos.npz --out docs/compare \
        --entry OAT=models/oat-metaworld-mt3@1,2,4,8 --entry OATX=runs/compare/b_oatx@best,8 \
        --entry FAST=runs/compare/b_fast --entry DP=runs/compare/b_diffusion@ddim10,ddim100 ...

An entry is NAME=BUNDLE[@SETTING,...]. SETTING is a token count k, `best` (the k at which the first
entry, the reference, succeeds most; resolved after it is evaluated), `budgetMS` (an OAT bundle's
anytime mode: each act() generates tokens until the next would pass MS milliseconds, e.g. `budget3`
or `budget2.5`) or `ddimN` (Diffusion Policy with N DDIM steps). No SETTING: the bundle's own length
(FAST stops at its end token, Bin emits all H_a x D_a tokens). OAT bundles run through the C++
runtime (oat_edge.Policy), the baselines through oat_edge.baselines.runners; both by one closed-loop
episode function, oat_edge.measure.evaluate.run_policy_episode, on the same episode and sampling
seeds.

Two measurements, both written to --out:
  closed loop  each (row, task): `episodes` Meta-World episodes, 50 Hz virtual clock with real
               inference latency; success, act() errors per episode (a FAST sequence that does
               not decode is an error: the loop holds its last safe action and replans).
  latency      every row's act() at batch 1, one ORT thread, on held-out demo observations,
               all rows interleaved call by call in one process (shuffled order per round), so
               machine drift hits every row alike: p50 / p99 ms and tokens per act. OAT at its
               largest k also runs through the same Python ORT loop as the baselines, for a
               like-for-like row.
Outputs: results.json (everything, per episode too), results.md (the table), pareto.png,
shards.json (finished closed-loop shards, kept as they finish; --reuse takes them).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np

from .compare_report import markdown, pareto_plot  # noqa: F401  (re-exported for callers)

# ----------------------------------------------------------------------------------- rows

def parse_entry(text: str) -> dict:
    """'NAME=PATH[@SETTING,...]' -> {"name", "path", "specs": [...]} (specs as strings)."""
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise ValueError(f"--entry: expected NAME=BUNDLE[@SETTING,...], got {text!r}")
    path, _, spec = rest.partition("@")
    specs = [s.strip() for s in spec.split(",") if s.strip()] if spec else ["default"]
    for s in specs:
        if not (s in ("default", "best", "greedy") or s.isdigit() or (s.startswith("ddim") and s[4:].isdigit())
                or _budget_ms(s) is not None):
            raise ValueError(f"--entry {name}: SETTING {s!r}: expected a token count, 'best', 'greedy', "
                             f"'budgetMS' (a latency budget > 0 ms) or 'ddimN'")
    return {"name": name, "path": path, "specs": specs}


def _budget_ms(spec: str):
    """'budget3' -> 3.0; None for any other setting (or a budget that is not a number > 0)."""
    if not spec.startswith("budget"):
        return None
    try:
        ms = float(spec[6:])
    except ValueError:
        return None
    return ms if 0 < ms < float("inf") else None


def is_oat_bundle(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "model.onnx"))


def row_label(name: str, spec: str) -> str:
    if spec in ("default", "greedy"):
        return name + (" greedy" if spec == "greedy" else "")
    if _budget_ms(spec) is not None:
        return f"{name} budget {_budget_ms(spec):g} ms"
    return f"{name} {spec.replace('ddim', 'DDIM ')}" if spec.startswith("ddim") else f"{name} k={spec}"


def load_row_policy(row: dict, threads: int = 1, python_loop: bool = False):
    """The policy object a row runs: oat_edge.Policy for OAT bundles (unless python_loop),
    a runner for baselines."""
    from oat_edge.baselines.runners import open_runner
    if is_oat_bundle(row["path"]) and not python_loop:
        import oat_edge
        return oat_edge.Policy(row["path"], threads=threads)
    spec = row["spec"]
    steps = int(spec[4:]) if spec.startswith("ddim") else None
    runner = open_runner(row["path"], threads=threads, denoise_steps=steps)
    return Greedy(runner) if spec == "greedy" else runner


class Greedy:
    """A token policy decoded greedily (temperature 0) whatever the caller asks."""

    def __init__(self, policy):
        self.policy = policy

    @property
    def info(self):
        return self.policy.info

    @property
    def last_stats(self):
        return self.policy.last_stats

    def check_options(self, **options):
        self.policy.check_options(**dict(options, temperature=0.0))

    def act(self, obs, **options):
        return self.policy.act(obs, **dict(options, temperature=0.0))


def row_k(row: dict):
    return int(row["spec"]) if row["spec"].isdigit() else None


def row_budget(row: dict):
    """The latency budget (ms) of an anytime row, else None."""
    return _budget_ms(row["spec"])


# ----------------------------------------------------------------------------- closed loop

def eval_shard(job: dict) -> dict:
    """One (row, task): `episodes` closed-loop episodes. Runs in a worker process."""
    from oat_edge.measure.evaluate import episode_seeds, run_policy_episode
    from oat_edge.sim.metaworld_env import MetaWorldEnv
    t0 = time.perf_counter()
    policy = load_row_policy(job["row"], job["threads"])
    info = policy.info
    k = row_k(job["row"])
    env = MetaWorldEnv(job["task"], tasks=info.get("tasks") or [], n_obs_steps=int(info["n_obs_steps"]),
                       obs_dim=int(info["obs_dim"]))
    for _ in range(3):  # first-run costs are not part of the measured latency
        try:
            policy.act(env.reset(0), max_tokens=k, seed=0)
        except Exception:  # noqa: BLE001  (a FAST warm-up sequence may not decode: that is fine here)
            pass
    episodes = []
    for s in episode_seeds(job["seed"], job["episodes"]):
        # inline inference: the chunk is used in the cycle that asked for it, so success measures
        # the policy alone, not this machine's load; latency is measured separately
        e = run_policy_episode(policy, env, s, k, job["hz"], latency_budget_ms=row_budget(job["row"]),
                               background=False, act_seed=s * 7919 + (k or 0))
        episodes.append({"seed": s, "success": bool(e["success"]), "steps": int(e["steps"]),
                         "errors": int(e["errors"]), "acts": len(e["latencies"]),
                         "tokens": float(np.mean(e["tokens"])) if e["tokens"] else None,
                         "latency_ms_max": float(max(e["latencies"])) if e["latencies"] else None,
                         "overruns": int(e["overruns"]), "error_messages": list(e["error_messages"])[:2]})
    env.close()
    return {"label": job["row"]["label"], "path": job["row"]["path"], "spec": job["row"]["spec"],
            "task": job["task"], "episodes": episodes, "seconds": time.perf_counter() - t0}


def _run_jobs(jobs, workers: int, log, on_done) -> list[dict]:
    """Run the shards; on_done(shard) after each (the caller keeps a cache of finished shards)."""
    out = []

    def done(r):
        out.append(r)
        on_done(r)
        log(f"  {r['label']:<24} {r['task']:<15} {_succ(r):5.1f}%  ({r['seconds']:.0f} s)")
    if workers == 1:
        for j in jobs:
            done(eval_shard(j))
        return out
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as ex:
        for r in ex.map(eval_shard, jobs):
            done(r)
    return out


def _succ(shard) -> float:
    return 100.0 * np.mean([e["success"] for e in shard["episodes"]])


def _key(row: dict, task: str) -> tuple:
    return (row["label"], os.path.abspath(row["path"]), row["spec"], task)


def _reusable_shards(path: str, common: dict) -> dict:
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        old = json.load(f)
    if any(old.get(k) != common[k] for k in ("episodes", "seed", "hz")):
        return {}
    return {(s["label"], os.path.abspath(s["path"]), s["spec"], s["task"]): s for s in old.get("shards", [])}


def summarize_eval(rows, shards, tasks) -> dict:
    by = {(s["label"], s["task"]): s for s in shards}
    out = {}
    for r in rows:
        eps = {t: by[(r["label"], t)]["episodes"] for t in tasks if (r["label"], t) in by}
        if len(eps) < len(tasks):  # a mean over some of the tasks would not compare with the others
            continue
        flat = [e for t in eps for e in eps[t]]
        out[r["label"]] = {
            "success": {t: float(np.mean([e["success"] for e in eps[t]])) for t in eps},
            "mean_success": float(np.mean([np.mean([e["success"] for e in eps[t]]) for t in eps])),
            "errors_per_episode": float(np.mean([e["errors"] for e in flat])),
            "episodes_with_errors": float(np.mean([e["errors"] > 0 for e in flat])),
            "error_share_of_acts": float(sum(e["errors"] for e in flat) / max(1, sum(e["acts"] for e in flat))),
            "tokens_per_act": (float(np.mean([e["tokens"] for e in flat if e["tokens"] is not None]))
                               if any(e["tokens"] is not None for e in flat) else None),
            "overruns": int(sum(e["overruns"] for e in flat)),
            "error_messages": sorted({m for e in flat for m in e["error_messages"]})[:3]}
    return out


# -------------------------------------------------------------------------------- latency

def bench_latency(rows, observations, rounds: int, seed: int = 0, log=print) -> dict:
    """Interleaved batch-1, one-thread act() timing of every row on the same observations."""
    from oat_edge.baselines.runners import UndecodableActions
    pols = {}
    for r in rows:
        pols[r["label"]] = (load_row_policy(r, 1, r.get("python_loop", False)), row_k(r), row_budget(r))
    times = {lab: [] for lab in pols}
    tokens = {lab: [] for lab in pols}
    bad = {lab: 0 for lab in pols}
    for _lab, (p, k, ms) in pols.items():  # warm-up, not timed
        for i in range(5):
            try:
                p.act(observations[i % len(observations)], max_tokens=k, seed=i, latency_budget_ms=ms)
            except UndecodableActions:
                pass
    order = list(pols)
    rng = random.Random(seed)
    t_start = time.perf_counter()
    for i in range(rounds):
        rng.shuffle(order)
        obs = observations[i % len(observations)]
        for lab in order:
            p, k, ms = pols[lab]
            t = time.perf_counter()
            try:
                _, st = p.act(obs, max_tokens=k, seed=1000 + i, return_stats=True, latency_budget_ms=ms)
            except UndecodableActions:
                st = p.last_stats or {}
                bad[lab] += 1
            times[lab].append((time.perf_counter() - t) * 1e3)
            if st.get("tokens_used") is not None:
                tokens[lab].append(st["tokens_used"])
        if (i + 1) % max(1, rounds // 5) == 0:
            log(f"  latency round {i + 1}/{rounds} ({time.perf_counter() - t_start:.0f} s)")
    return {lab: {"p50_ms": float(np.percentile(times[lab], 50)), "p99_ms": float(np.percentile(times[lab], 99)),
                  "mean_ms": float(np.mean(times[lab])), "calls": len(times[lab]),
                  "tokens_per_act": float(np.mean(tokens[lab])) if tokens[lab] else None,
                  "undecodable_share": bad[lab] / len(times[lab])} for lab in pols}


def held_out_observations(demos: str, n: int, seed: int = 0) -> np.ndarray:
    """n observation windows [n_obs_steps, obs_dim] from the held-out episodes of the demos."""
    from oat_edge.train.dataset import DataConfig, load_dataset
    _, val, _ = load_dataset(demos, DataConfig())
    idx = np.random.default_rng(seed).choice(len(val), size=min(n, len(val)), replace=False)
    return val.obs.numpy()[idx]


# --------------------------------------------------------------------------------- output

def build_rows(entries) -> list[dict]:
    rows = []
    for e in entries:
        for s in e["specs"]:
            rows.append({"name": e["name"], "path": e["path"], "spec": s, "label": row_label(e["name"], s)})
    return rows


def best_k(summary: dict, rows: list[dict]) -> str:
    ref = rows[0]["name"]
    cand = [(summary[r["label"]]["mean_success"], -int(r["spec"]), r["spec"]) for r in rows
            if r["name"] == ref and r["spec"].isdigit() and r["label"] in summary]
    if not cand:
        raise ValueError(f"'best' needs the first entry ({ref}) evaluated at token counts, e.g. {ref}=PATH@1,2,4,8")
    return max(cand)[2]  # highest success; ties: the fewer tokens


def _parser():
    p = argparse.ArgumentParser(prog="oat-edge compare", description=__doc__.split("\n\n")[0])
    p.add_argument("--entry", action="append", required=True, metavar="NAME=BUNDLE[@SETTING,...]",
                   help="a policy to compare; the first is the reference (OAT)")
    p.add_argument("--demos", required=True, help="demos .npz: held-out observations for the latency run")
    p.add_argument("--out", required=True)
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--tasks", nargs="+", default=None, help="default: the reference bundle's tasks")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hz", type=float, default=50.0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rounds", type=int, default=200, help="interleaved latency rounds")
    p.add_argument("--reuse-only", action="store_true",
                   help="like --reuse, and run no new closed-loop shards: rows without results get latency only")
    p.add_argument("--reuse-from", nargs="+", default=[], metavar="DIR",
                   help="also take finished shards from these earlier --out directories")
    p.add_argument("--reuse", action="store_true",
                   help="take closed-loop results of rows already in OUT/shards.json (same bundle, spec, "
                        "episodes, seed, rate) instead of running them again")
    return p


def _with_best_k(rows, first, shards, tasks, log):
    """Rows whose spec is 'best' take the k at which the reference succeeded most (its label
    changes with it); a row that then repeats another is dropped. Returns (rows, best k)."""
    best = best_k(summarize_eval(first, shards, tasks), rows)
    log(f"the reference succeeds most at k={best}")
    rows = [dict(r, spec=best, label=row_label(r["name"], best)) if r["spec"] == "best" else r for r in rows]
    seen, uniq = set(), []  # 'best' may equal a k already listed for that entry
    for r in rows:
        if r["label"] not in seen:
            seen.add(r["label"])
            uniq.append(r)
    return uniq, best


def _latency_rows(rows):
    """Every row, plus the reference's largest k run through the baselines' Python ORT loop, so
    the comparison of loops is like for like."""
    bench_rows = list(rows)
    ref_rows = [r for r in rows if r["name"] == rows[0]["name"] and r["spec"].isdigit()]
    if is_oat_bundle(rows[0]["path"]) and ref_rows:
        top = max(ref_rows, key=lambda r: int(r["spec"]))
        bench_rows.append(dict(top, label=f"{top['label']} (Python ORT loop)", python_loop=True))
    return bench_rows


def main(argv=None) -> int:
    p = _parser()
    a = p.parse_args(argv)
    try:
        entries = [parse_entry(e) for e in a.entry]
    except ValueError as exc:
        p.error(str(exc))
    for e in entries:
        if not os.path.isdir(e["path"]):
            p.error(f"--entry {e['name']}: bundle {e['path']!r} not found (export it first)")
        if any(_budget_ms(s) is not None for s in e["specs"]) and not is_oat_bundle(e["path"]):
            p.error(f"--entry {e['name']}: a latency budget needs an OAT bundle (the anytime mode); "
                    f"{e['path']!r} is a baseline")
    if a.episodes < 1 or a.rounds < 1 or a.workers < 1:
        p.error("--episodes, --rounds and --workers: expected >= 1")
    from oat_edge.atomic import check_output_dir, write_json, write_text
    check_output_dir(a.out, force=True)
    log = lambda m: print(m, flush=True)  # noqa: E731
    rows = build_rows(entries)
    ref = load_row_policy(rows[0])
    tasks = a.tasks or list(ref.info.get("tasks") or [])
    del ref
    common = dict(episodes=a.episodes, seed=a.seed, hz=a.hz, threads=1)
    cache_path = os.path.join(a.out, "shards.json")  # every finished shard, kept as they finish
    cached = {}
    for d in ([a.out] if a.reuse or a.reuse_only else []) + a.reuse_from:
        cached.update(_reusable_shards(os.path.join(d, "shards.json"), common))
    finished = dict(cached)

    def keep(shard):
        finished[(shard["label"], os.path.abspath(shard["path"]), shard["spec"], shard["task"])] = shard
        write_json(cache_path, dict(common, shards=list(finished.values())))

    def run(rs):
        todo = [dict(common, row=r, task=t) for r in rs for t in tasks
                if _key(r, t) not in cached and not a.reuse_only]
        log(f"closed loop: {len(todo)} (row, task) shards x {a.episodes} episodes"
            + (f" ({sum(_key(r, t) in cached for r in rs for t in tasks)} reused)" if cached else ""))
        done = [cached[_key(r, t)] for r in rs for t in tasks if _key(r, t) in cached]
        return done + _run_jobs(todo, a.workers, log, keep)

    first = [r for r in rows if r["spec"] != "best"]
    shards = run(first)
    best = None
    if any(r["spec"] == "best" for r in rows):
        rows, best = _with_best_k(rows, first, shards, tasks, log)
        done = {s["label"] for s in shards}
        shards += run([r for r in rows if r["label"] not in done])
    summary = summarize_eval(rows, shards, tasks)
    obs = held_out_observations(a.demos, 64, a.seed)
    bench_rows = _latency_rows(rows)
    log(f"latency: {len(bench_rows)} rows interleaved, {a.rounds} rounds")
    latency = bench_latency(bench_rows, obs, a.rounds, a.seed, log)
    res = {"tasks": tasks, "episodes": a.episodes, "seed": a.seed, "hz": a.hz, "rounds": a.rounds,
           "best_k": best, "rows": rows, "eval": summary, "latency": latency, "shards": shards,
           "command": "python -m oat_edge.baselines.compare " + " ".join(sys.argv[1:] if argv is None else argv)}
    write_json(os.path.join(a.out, "results.json"), res)
    table = markdown(res)
    write_text(os.path.join(a.out, "results.md"), table)
    pareto_plot(res, os.path.join(a.out, "pareto.png"))
    print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
