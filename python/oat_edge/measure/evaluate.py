"""Closed-loop evaluation of a bundle in Meta-World: success vs number of tokens k.

Each (task, k) shard runs `episodes` episodes in its own process. The simulator steps at a fixed
rate on a virtual clock (`hz`); inference latency is measured for real and decides, as on a
robot with background inference, how many cycles later a chunk lands (ControlLoop with
virtual_time=True). The scripted expert runs on the same episode seeds as a reference.

Output (out_dir): results.json, results.md (table), success_vs_k.png, latency_vs_k.png,
rate_distortion.png (success vs bits = k * log2(codebook_size)).
"""

from __future__ import annotations

import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context

import numpy as np

from ..control import ControlLoop, info_bounds, percentiles


def _load_policy(bundle, factory, threads: int):
    """factory: "module:attr" or a callable (bundle, threads=) -> policy. Default
    oat_edge:Policy; tests inject fakes (a callable needs workers=1 unless it pickles)."""
    if callable(factory):
        return factory(bundle, threads=threads)
    import importlib
    mod, _, attr = factory.partition(":")
    return getattr(importlib.import_module(mod), attr)(bundle, threads=threads)


def _bounds(policy, env):
    """Bundle bounds (if declared) intersected with the simulator's action space."""
    low, high = info_bounds(policy)
    if low is None:
        return env.action_low, env.action_high
    low = np.maximum(np.asarray(low, float), env.action_low)
    high = np.minimum(np.asarray(high, float), env.action_high)
    return low, np.maximum(low, high)


def episode_seeds(seed: int, episodes: int) -> list[int]:
    return [seed * 100_000 + i for i in range(episodes)]


def run_policy_episode(policy, env, layout_seed: int, k: int | None, hz: float,
                       latency_budget_ms=None, background=True, act_seed=None,
                       n_action_steps=None) -> dict:
    env.reset(layout_seed)
    low, high = _bounds(policy, env)
    loop = ControlLoop(policy, env.observation, env.step, hz=hz, max_tokens=k,
                       latency_budget_ms=latency_budget_ms, background=background,
                       n_action_steps=n_action_steps,
                       virtual_time=True, action_low=low, action_high=high, seed=act_seed)
    try:
        s = loop.run(env.max_steps, until=lambda: env.done)
    finally:
        loop.close()
    return {"success": env.success, "steps": env.steps,
            "latencies": [r["inference_ms"] for r in loop.records if r["inference_ms"] is not None],
            "tokens": [r["tokens_used"] for r in loop.records if r["tokens_used"] is not None],
            "overruns": s["overruns"], "cycles": s["cycles"], "errors": s["errors"],
            "error_messages": s["error_messages"], "rejected_chunks": s["rejected_chunks"],
            "stale_chunks": s["stale_chunks"]}


def _shard(job: dict) -> dict:
    """One (task, k) shard, or the expert shard when job['k'] == 'expert'. Runs in a worker."""
    from ..sim.metaworld_env import MetaWorldEnv, expert_episode
    seeds = episode_seeds(job["seed"], job["episodes"])
    t0 = time.perf_counter()
    if job["k"] == "expert":
        env = MetaWorldEnv(job["task"], n_obs_steps=1)
        ok = [expert_episode(env, s) for s in seeds]
        env.close()
        return {**job, "successes": int(sum(ok)), "seconds": time.perf_counter() - t0}
    policy = _load_policy(job["bundle"], job["factory"], job["threads"])
    info = policy.info
    env = MetaWorldEnv(job["task"], tasks=info.get("tasks") or [],
                       n_obs_steps=int(info["n_obs_steps"]), obs_dim=int(info["obs_dim"]))
    # Warm-up (session/allocator first-run costs) is not part of the measured latency.
    for _ in range(3):
        policy.act(env.reset(0), max_tokens=job["k"])
    eps = [run_policy_episode(policy, env, s, job["k"], job["hz"], job["latency_budget_ms"],
                              job["background"], act_seed=s * 7919 + job["k"],
                              n_action_steps=job["n_action_steps"])
           for s in seeds]
    env.close()
    lat = [x for e in eps for x in e["latencies"]]
    tok: dict[str, int] = {}
    for e in eps:
        for t in e["tokens"]:
            tok[str(t)] = tok.get(str(t), 0) + 1
    cycles = sum(e["cycles"] for e in eps)
    msgs = [m for e in eps for m in e["error_messages"]][:5]
    return {**job, "successes": int(sum(e["success"] for e in eps)),
            "mean_steps": float(np.mean([e["steps"] for e in eps])),
            "latency_ms": percentiles(lat),
            "tokens_hist": dict(sorted(tok.items(), key=lambda kv: int(kv[0]))),
            "overruns": int(sum(e["overruns"] for e in eps)),
            "overrun_rate": sum(e["overruns"] for e in eps) / cycles if cycles else 0.0,
            "errors": int(sum(e["errors"] for e in eps)), "error_messages": msgs,
            "rejected_chunks": int(sum(e["rejected_chunks"] for e in eps)),
            "stale_chunks": int(sum(e["stale_chunks"] for e in eps)),
            "seconds": time.perf_counter() - t0}


def _progress(total: int, show: bool):
    if not show:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc="eval shards", unit="shard")


def evaluate(bundle, tasks=None, episodes: int = 50, ks=(1, 2, 4, 8), latency_budget_ms=None,
             hz: float = 50.0, workers: int = 2, seed: int = 0, out_dir="runs/eval",
             expert: bool = True, background: bool = True, threads: int = 1,
             policy_factory="oat_edge:Policy", progress: bool = True,
             plots: bool = True, n_action_steps=None) -> dict:
    """Evaluate `bundle` on `tasks` for each k in `ks`; write and return the results dict."""
    if not (isinstance(episodes, int) and episodes >= 1):
        raise ValueError(f"episodes must be an int >= 1, got {episodes!r}")
    if not (isinstance(workers, int) and workers >= 1):
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    if not hz > 0:
        raise ValueError(f"hz must be > 0, got {hz!r}")
    policy = _load_policy(bundle, policy_factory, threads)
    info = policy.info
    K = int(info["num_tokens"])
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1 or ks[-1] > K:
        raise ValueError(f"ks must be token counts in 1..{K} (K of this bundle), got {ks}")
    bundle_tasks = list(info.get("tasks") or [])
    tasks = list(tasks) if tasks else bundle_tasks
    if not tasks:
        raise ValueError("the bundle declares no tasks: pass tasks=[...]")
    unknown = [t for t in tasks if bundle_tasks and t not in bundle_tasks]
    if unknown:
        raise ValueError(f"tasks {unknown} are not in the bundle's tasks {bundle_tasks}")
    H = int(info["horizon"])
    if n_action_steps is not None and not (isinstance(n_action_steps, int) and 1 <= n_action_steps <= H):
        raise ValueError(f"n_action_steps must be an int in 1..{H} (the chunk length), got {n_action_steps!r}")
    codebook = int(info.get("codebook_size")
                   or (info.get("manifest") or {}).get("tokenizer", {}).get("codebook_size"))
    del policy

    common = dict(bundle=os.fspath(bundle), episodes=episodes, seed=seed, hz=hz,
                  latency_budget_ms=latency_budget_ms, background=background, threads=threads,
                  factory=policy_factory, n_action_steps=n_action_steps)
    jobs = [dict(common, task=t, k=k) for t in tasks for k in ks]
    if expert:
        jobs += [dict(common, task=t, k="expert") for t in tasks]
    bar = _progress(len(jobs), progress)
    done: list[dict] = []
    t0 = time.perf_counter()
    if workers == 1:
        for j in jobs:
            done.append(_shard(j))
            bar and bar.update(1)
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as ex:
            futs = [ex.submit(_shard, j) for j in jobs]
            for f in as_completed(futs):
                done.append(f.result())
                bar and bar.update(1)
    bar and bar.close()

    results: dict = {"bundle": os.fspath(bundle), "tasks": tasks, "ks": ks,
                     "episodes": episodes, "seed": seed, "hz": hz,
                     "latency_budget_ms": latency_budget_ms, "background": background,
                     "n_action_steps": n_action_steps or int(info["n_action_steps"]),
                     "codebook_size": codebook,
                     "bits": {str(k): k * math.log2(codebook) for k in ks},
                     "per_task": {t: {} for t in tasks}, "expert": {},
                     "wall_s": time.perf_counter() - t0}
    for r in done:
        if r["k"] == "expert":
            results["expert"][r["task"]] = r["successes"] / episodes
            continue
        keep = {k: v for k, v in r.items() if k not in common and k not in ("task", "k")}
        keep["success_rate"] = r["successes"] / episodes
        results["per_task"][r["task"]][str(r["k"])] = keep
    results["mean_success"] = {
        str(k): float(np.mean([results["per_task"][t][str(k)]["success_rate"] for t in tasks]))
        for k in ks}
    if expert:
        results["expert_mean"] = float(np.mean([results["expert"][t] for t in tasks]))
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(markdown_table(results))
    if plots:
        write_plots(results, out_dir)
    return results


def markdown_table(res: dict) -> str:
    ks, tasks = res["ks"], res["tasks"]
    head = "| task | " + " | ".join(f"k={k} ({res['bits'][str(k)]:.0f} bit)" for k in ks)
    head += " | expert |\n" if res["expert"] else " |\n"
    sep = "|---" * (len(ks) + 1 + bool(res["expert"])) + "|\n"
    rows = []
    for t in tasks:
        cells = [f"{100 * res['per_task'][t][str(k)]['success_rate']:.0f}%" for k in ks]
        if res["expert"]:
            cells.append(f"{100 * res['expert'][t]:.0f}%")
        rows.append(f"| {t} | " + " | ".join(cells) + " |\n")
    mean = [f"**{100 * res['mean_success'][str(k)]:.1f}%**" for k in ks]
    if res["expert"]:
        mean.append(f"**{100 * res['expert_mean']:.1f}%**")
    rows.append("| mean | " + " | ".join(mean) + " |\n")
    lat = []
    for k in ks:
        ps = [res["per_task"][t][str(k)]["latency_ms"] for t in tasks]
        p50 = np.median([p["p50"] for p in ps if p])
        p99 = max(p["p99"] for p in ps if p) if any(ps) else float("nan")
        lat.append(f"{p50:.1f} / {p99:.1f}")
    rows.append("| act ms p50 / p99 | " + " | ".join(lat)
                + (" | – |\n" if res["expert"] else " |\n"))
    ov = [str(sum(res["per_task"][t][str(k)]["overruns"] for t in tasks)) for k in ks]
    rows.append("| overruns | " + " | ".join(ov) + (" | – |\n" if res["expert"] else " |\n"))
    note = (f"\n{res['episodes']} episodes per cell, seed {res['seed']}, {res['hz']:g} Hz "
            f"virtual clock, latency budget {res['latency_budget_ms']} ms.\n")
    return head + sep + "".join(rows) + note


def write_plots(res: dict, out_dir: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks, tasks = res["ks"], res["tasks"]
    sr = {t: [100 * res["per_task"][t][str(k)]["success_rate"] for k in ks] for t in tasks}
    mean = [100 * res["mean_success"][str(k)] for k in ks]

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for t in tasks:
        ax.plot(ks, sr[t], "o-", alpha=0.6, label=t)
    ax.plot(ks, mean, "ks-", lw=2, label="mean")
    if res["expert"]:
        ax.axhline(100 * res["expert_mean"], color="gray", ls="--", label="expert (mean)")
    ax.set(xscale="log", xlabel="tokens k", ylabel="success %", ylim=(-2, 102),
           title="Success vs prefix length")
    ax.minorticks_off()  # log axis: label only the evaluated k, no 3x10^0 minor labels
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.legend(fontsize=7)
    fig.tight_layout(); fig.savefig(os.path.join(out_dir, "success_vs_k.png"), dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for q, style in (("p50", "o-"), ("p99", "s--")):
        vals = [np.median([res["per_task"][t][str(k)]["latency_ms"].get(q, np.nan)
                           for t in tasks]) for k in ks]
        ax.plot(ks, vals, style, label=q)
    if res.get("latency_budget_ms"):
        ax.axhline(res["latency_budget_ms"], color="red", ls=":", label="budget")
    ax.axhline(1e3 / res["hz"], color="gray", ls="--", label="control period")
    ax.set(xticks=ks, xlabel="tokens k", ylabel="act latency (ms)", title="Latency vs k")
    ax.legend(fontsize=7)
    fig.tight_layout(); fig.savefig(os.path.join(out_dir, "latency_vs_k.png"), dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.5))
    bits = [res["bits"][str(k)] for k in ks]
    ax.plot(bits, mean, "ks-")
    for b, m, k in zip(bits, mean, ks):
        ax.annotate(f"k={k}", (b, m), textcoords="offset points", xytext=(4, -10), fontsize=8)
    ax.set(xlabel=f"bits per chunk (k·log2 {res['codebook_size']})", ylabel="mean success %",
           ylim=(-2, 102), title="Rate–distortion")
    fig.tight_layout(); fig.savefig(os.path.join(out_dir, "rate_distortion.png"), dpi=120)
    plt.close(fig)
