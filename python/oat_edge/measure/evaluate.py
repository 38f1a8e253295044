"""Closed-loop evaluation of a bundle in Meta-World: success vs number of tokens k.

Each (task, k) shard runs `episodes` episodes in its own process. The simulator steps at a fixed
rate on a virtual clock (`hz`); inference latency is measured for real and decides, as on a
robot with background inference, how many cycles later a chunk lands (ControlLoop with
virtual_time=True). The scripted expert runs on the same episode seeds as a reference.
State bundles see Meta-World's state, camera bundles (an `observation` block in the manifest)
its rendered cameras, through the same episode loop (eval_env.py).

With `record=N`, the first N episodes of each (task, k) are also written as videos to
`record_dir` (record.py); the directory is checked before the run, as out_dir is.

Output (out_dir): results.json, results.md (table), success_vs_k.png, latency_vs_k.png,
rate_distortion.png (success vs bits = k * log2(codebook_size)), each written atomically. An
out_dir that already holds files is refused unless `force`. Ctrl-C stops every worker within
seconds; the episodes that had finished are saved (results marked "interrupted", no plots).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np

from ..atomic import OutputError, check_output_dir, write_json, write_text
from ..control import ControlLoop, info_bounds, percentiles
from .eval_env import eval_env, observation_spec, simulation
from .eval_report import markdown_table, write_plots
from .record import episode_recording

__all__ = ["EvalConfig", "evaluate", "episode_seeds", "markdown_table", "run_policy_episode"]

# After Ctrl-C, how long running shards get to hand back the episodes they finished.
DRAIN_S = 5.0


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
                       n_action_steps=None, *, recording=None, temperature=None) -> dict:
    """One episode on layout `layout_seed`. env: MetaWorldEnv, or an environment with
    `after_cycle(loop)` (called after each cycle, e.g. PixelEvalEnv); recording: an
    EpisodeRecording that gets every cycle, closed (or aborted) here."""
    env.reset(layout_seed)
    low, high = _bounds(policy, env)
    send, on_cycle, video = env.step, None, None
    after = getattr(env, "after_cycle", None)
    if recording is not None:
        def send(a, _step=env.step):
            recording.action(a)
            _step(a)
    if after is not None or recording is not None:
        def on_cycle(rec):
            if after is not None:
                after(loop)
            if recording is not None:
                recording.cycle(env, rec)
    loop = ControlLoop(policy, env.observation, send, hz=hz, max_tokens=k,
                       latency_budget_ms=latency_budget_ms, background=background,
                       n_action_steps=n_action_steps, temperature=temperature,
                       virtual_time=True, action_low=low, action_high=high, seed=act_seed)
    try:
        if recording is not None:
            recording.start(env)
        s = loop.run(env.max_steps, until=lambda: env.done, on_cycle=on_cycle)
        if recording is not None:
            video = recording.close()
    except BaseException:
        if recording is not None:
            recording.abort()
        raise
    finally:
        loop.close()
    return {"success": env.success, "steps": env.steps,
            "latencies": [r["inference_ms"] for r in loop.records if r["inference_ms"] is not None],
            "tokens": [r["tokens_used"] for r in loop.records if r["tokens_used"] is not None],
            "overruns": s["overruns"], "cycles": s["cycles"], "errors": s["errors"],
            "error_messages": s["error_messages"], "rejected_chunks": s["rejected_chunks"],
            "stale_chunks": s["stale_chunks"], "video": video}


# Set in a worker process once it has been interrupted: the shards it is handed afterwards return
# at once. (A flag of its own: SIGINT may be ignored from the start, e.g. under nohup or `cmd &`
# in a script, and that is no interruption.)
_worker_interrupted = False


def _until_interrupted(run_one, seeds) -> tuple[list, bool]:
    """run_one(seed) for each seed; on Ctrl-C keep the finished ones and ignore further
    Ctrl-C, so that they can still be handed back."""
    global _worker_interrupted
    out = []
    if _worker_interrupted:
        return out, True
    try:
        for s in seeds:
            out.append(run_one(s))
    except KeyboardInterrupt:
        if multiprocessing.parent_process() is not None:  # a worker: hand back, then leave
            _worker_interrupted = True
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        return out, True
    return out, False


def _shard(job: dict) -> dict:
    """One (task, k) shard, or the expert shard when job['k'] == 'expert'. Runs in a worker."""
    from ..sim.metaworld_env import MetaWorldEnv, expert_episode
    seeds = episode_seeds(job["seed"], job["episodes"])
    t0 = time.perf_counter()
    if job["k"] == "expert":
        env = MetaWorldEnv(job["task"], n_obs_steps=1)
        ok, stopped = _until_interrupted(lambda s: expert_episode(env, s), seeds)
        env.close()
        return {**job, "successes": int(sum(ok)), "episodes_done": len(ok),
                "interrupted": stopped, "seconds": time.perf_counter() - t0}
    env, policy = eval_env(job["task"], _load_policy(job["bundle"], job["factory"], job["threads"]))
    # Warm-up (session/allocator first-run costs) is not part of the measured latency.
    for _ in range(3):
        policy.act(env.reset(0), max_tokens=job["k"], temperature=job["temperature"])
    try:
        eps, stopped = _until_interrupted(
            lambda s: run_policy_episode(policy, env, s, job["k"], job["hz"],
                                         job["latency_budget_ms"], job["background"],
                                         act_seed=s * 7919 + job["k"],
                                         n_action_steps=job["n_action_steps"],
                                         recording=episode_recording(job, simulation(env),
                                                                      s - seeds[0]),
                                         temperature=job["temperature"]), seeds)
    finally:
        frames = {k: getattr(env, k) for k in FRAME_COUNTS if hasattr(env, k)}
        env.close()
    lat = [x for e in eps for x in e["latencies"]]
    tok: dict[str, int] = {}
    for e in eps:
        for t in e["tokens"]:
            tok[str(t)] = tok.get(str(t), 0) + 1
    cycles = sum(e["cycles"] for e in eps)
    msgs = [m for e in eps for m in e["error_messages"]][:5]
    return {**job, "successes": int(sum(e["success"] for e in eps)),
            "episodes_done": len(eps), "interrupted": stopped,
            "mean_steps": float(np.mean([e["steps"] for e in eps])) if eps else float("nan"),
            "latency_ms": percentiles(lat),
            "tokens_hist": dict(sorted(tok.items(), key=lambda kv: int(kv[0]))),
            "overruns": int(sum(e["overruns"] for e in eps)),
            "overrun_rate": sum(e["overruns"] for e in eps) / cycles if cycles else 0.0,
            "errors": int(sum(e["errors"] for e in eps)), "error_messages": msgs,
            "rejected_chunks": int(sum(e["rejected_chunks"] for e in eps)),
            "stale_chunks": int(sum(e["stale_chunks"] for e in eps)),
            "videos": [{"file": e["video"], "success": e["success"], "steps": e["steps"]}
                       for e in eps if e["video"]], **frames,
            "seconds": time.perf_counter() - t0}


# A camera bundle's environment counts the frames it drew and skipped (eval_env.PixelEvalEnv).
FRAME_COUNTS = ("frames_rendered", "frames_skipped", "frames_refused")


def _progress(total: int, show: bool):
    if not show:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    import sys
    return tqdm(total=total, desc="eval shards", unit="shard",
                disable=None if show == "auto" else False,  # "auto": off when not a terminal
                file=sys.stderr)


def _run_serial(jobs, bar) -> tuple[list, bool]:
    done = []
    for j in jobs:
        try:
            r = _shard(j)
        except KeyboardInterrupt:  # between episodes (loading, warm-up): keep earlier shards
            return done, True
        done.append(r)
        bar and bar.update(1)
        if r["interrupted"]:
            return done, True
    return done, False


def _run_pool(jobs, workers, bar) -> tuple[list, bool]:
    """Shards in worker processes. On Ctrl-C: no new shard starts, running ones are asked to
    stop (SIGINT) and hand back their finished episodes within DRAIN_S, then every worker
    process is terminated."""
    done, taken = [], set()
    ex = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
    futs = [ex.submit(_shard, j) for j in jobs]
    try:
        for f in as_completed(futs):
            done.append(f.result())
            taken.add(f)
            bar and bar.update(1)
        return done, False
    except KeyboardInterrupt:
        for f in futs:
            f.cancel()
        for p in list((ex._processes or {}).values()):
            if p.is_alive():
                os.kill(p.pid, signal.SIGINT)  # a terminal's Ctrl-C reached them already
        deadline = time.monotonic() + DRAIN_S
        for f in futs:
            if f in taken or f.cancelled():
                continue
            try:
                done.append(f.result(timeout=max(0.0, deadline - time.monotonic())))
            except (BaseException, FutureTimeout):  # noqa: B036  (a worker's KeyboardInterrupt)
                continue
        return done, True
    finally:
        procs = list((ex._processes or {}).values())
        for p in procs:
            if p.is_alive():
                p.terminate()
        ex.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            p.join(timeout=2.0)


@dataclass(frozen=True)
class EvalConfig:
    """Defaults of `evaluate` and `oat-edge eval` (one place for both)."""
    episodes: int = 50              # per (task, k)
    ks: tuple = (1, 2, 4, 8)        # prefix lengths
    workers: int = 2                # processes
    hz: float = 50.0                # simulated control rate
    seed: int = 0
    threads: int = 1                # inference threads per policy
    out_dir: str = "runs/eval"
    record_camera: str = "corner"   # the scene camera of recorded videos


def evaluate(bundle, tasks=None, episodes: int = EvalConfig.episodes, ks=EvalConfig.ks,
             latency_budget_ms=None, hz: float = EvalConfig.hz, workers: int = EvalConfig.workers,
             seed: int = EvalConfig.seed, out_dir=EvalConfig.out_dir, expert: bool = True,
             background: bool = True, threads: int = EvalConfig.threads,
             policy_factory="oat_edge:Policy", progress="auto",
             plots: bool = True, n_action_steps=None, force: bool = False, temperature=None,
             record: int = 0, record_dir=None, record_camera: str = EvalConfig.record_camera,
             record_format: str | None = None) -> dict:
    """Evaluate `bundle` on `tasks` for each k in `ks`; write and return the results dict.

    progress: True, False, or "auto" (a bar only when stderr is a terminal). record: videos of
    the first `record` episodes of each (task, k), into record_dir (default out_dir/videos),
    seen from the scene camera `record_camera`, as record_format "mp4" or "gif" (None: MP4
    where PyAV can write it)."""
    out_dir = check_output_dir(out_dir, force=force)  # before minutes of simulation, not after
    rec = _check_recording(record, record_dir, out_dir, force, record_camera, record_format,
                           episodes)
    if not (isinstance(workers, int) and workers >= 1):
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    if not hz > 0:
        raise ValueError(f"hz must be > 0, got {hz!r}")
    policy = _load_policy(bundle, policy_factory, threads)
    info = policy.info
    ks, tasks, codebook = _check_bundle_args(info, ks, tasks, n_action_steps)
    check = getattr(policy, "check_options", None)
    if temperature is not None and callable(check):  # the policy's own rule, before the simulation
        check(temperature=temperature)
    _check_simulation(policy, tasks[0], rec)
    del policy

    common = dict(bundle=os.fspath(bundle), episodes=episodes, seed=seed, hz=hz,
                  latency_budget_ms=latency_budget_ms, background=background, threads=threads,
                  factory=policy_factory, n_action_steps=n_action_steps, temperature=temperature,
                  **rec)
    jobs = [dict(common, task=t, k=k) for t in tasks for k in ks]
    if expert:
        jobs += [dict(common, task=t, k="expert") for t in tasks]
    bar = _progress(len(jobs), progress)
    t0 = time.perf_counter()
    try:
        done, interrupted = (_run_serial(jobs, bar) if workers == 1
                             else _run_pool(jobs, workers, bar))
    finally:
        bar and bar.close()
    # a shard that stopped early makes the whole run partial, whoever saw the interruption
    interrupted = interrupted or any(r["interrupted"] for r in done)
    results = _collect(done, tasks, ks, expert, common, info, codebook, time.perf_counter() - t0)
    results["interrupted"] = interrupted
    try:
        _write(results, out_dir, plots and not interrupted)
    except OutputError as exc:  # e.g. a full disk: the caller can still show what was measured
        exc.results = results
        raise
    return results


def _check_recording(record, record_dir, out_dir, force, camera, fmt, episodes) -> dict:
    if not (isinstance(episodes, int) and episodes >= 1):
        raise ValueError(f"episodes must be an int >= 1, got {episodes!r}")
    if isinstance(record, bool) or not (isinstance(record, int) and record >= 0):
        raise ValueError(f"record must be a number of episodes >= 0, got {record!r}")
    if not record:
        return dict(record=0, record_dir=None, record_camera=None, record_suffix=None)
    from .record import check_record_dir, video_suffix
    suffix = video_suffix(fmt)
    record_dir = check_record_dir(record_dir or os.path.join(out_dir, "videos"), force=force)
    return dict(record=min(record, episodes), record_dir=record_dir, record_camera=camera,
                record_suffix=suffix)


def _check_bundle_args(info, ks, tasks, n_action_steps):
    """(sorted ks, tasks, codebook size), each checked against the bundle."""
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
    return ks, tasks, int(info["codebook_size"])


def _check_simulation(policy, task: str, rec: dict) -> None:
    """A camera bundle's observation spec, its cameras and headless rendering, and the record
    camera, tried once here rather than failing in every worker after the run started."""
    if observation_spec(policy.info) is None and not rec["record"]:
        return
    env, _ = eval_env(task, policy)
    try:
        if rec["record"]:
            from ..sim.camera import CameraRenderer
            CameraRenderer(*simulation(env), [rec["record_camera"]], 16, 16).close()
    finally:
        env.close()


def _collect(done, tasks, ks, expert, common, info, codebook, wall_s) -> dict:
    """Results of the finished shards; a shard cut short counts only its finished episodes,
    and a cell with none is absent."""
    c = common
    results: dict = {"bundle": c["bundle"], "tasks": tasks, "ks": ks,
                     "episodes": c["episodes"], "seed": c["seed"], "hz": c["hz"],
                     "latency_budget_ms": c["latency_budget_ms"], "background": c["background"],
                     "temperature": c["temperature"],  # None: the bundle's sampling defaults
                     "n_action_steps": c["n_action_steps"] or int(info["n_action_steps"]),
                     "codebook_size": codebook,
                     "bits": {str(k): k * math.log2(codebook) for k in ks},
                     "per_task": {t: {} for t in tasks}, "expert": {},
                     "wall_s": wall_s}
    spec = observation_spec(info)
    if spec is not None:  # a camera bundle: what it saw
        results["observation"] = spec
    if c["record"]:
        results["record_dir"] = c["record_dir"]
    for r in done:
        if not r["episodes_done"]:
            continue
        rate = r["successes"] / r["episodes_done"]
        if r["k"] == "expert":
            results["expert"][r["task"]] = rate
            continue
        keep = {k: v for k, v in r.items() if k not in common and k not in ("task", "k")}
        keep["success_rate"] = rate
        results["per_task"][r["task"]][str(r["k"])] = keep
    cells = {str(k): [results["per_task"][t][str(k)]["success_rate"] for t in tasks
                      if str(k) in results["per_task"][t]] for k in ks}
    results["mean_success"] = {k: float(np.mean(v)) for k, v in cells.items() if v}
    if expert and results["expert"]:
        results["expert_mean"] = float(np.mean(list(results["expert"].values())))
    return results


def _write(results: dict, out_dir: str, plots: bool) -> None:
    write_json(os.path.join(out_dir, "results.json"), results)
    write_text(os.path.join(out_dir, "results.md"), markdown_table(results))
    if plots:
        write_plots(results, out_dir)
