"""`oat-edge` command line: one entry point for the whole pipeline.

Training/export/bench subcommands forward their arguments to the modules that own them, imported
only when used, so `oat-edge --help`, `inspect`, `eval` and `run` work on a robot without torch.
User errors print one line `oat-edge: error: ...` and exit non-zero, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

# subcommand -> (module, function, what it does, what it needs)
FORWARD = {
    "demos": ("oat_edge.train.demos", "main",
              "collect scripted-expert Meta-World demos (.npz, or --format lerobot)", "train"),
    "inspect-dataset": ("oat_edge.data.inspect", "main",
                        "check and summarize a LeRobot / robomimic dataset before training",
                        "train"),
    "train-tokenizer": ("oat_edge.train.train_tokenizer", "main",
                        "train an action tokenizer (OAT / OATX / Bin)", "train"),
    "tokenizer-report": ("oat_edge.measure.tokenizer_report", "main",
                         "a tokenizer's held-out reconstruction error per prefix length k "
                         "(rate-distortion)", "train"),
    "train-policy": ("oat_edge.train.train_policy", "main",
                     "train the autoregressive token policy", "train"),
    "export": ("oat_export.__main__", "main", "export a trained policy as an oat_edge bundle",
               "train"),
    "bench": ("oat_edge.measure.bench", "main", "benchmark act() latency of a bundle", "runtime"),
    "compare": ("oat_edge.baselines.compare", "main",
                "OAT vs baseline policies: closed-loop success, act() latency, Pareto plot", "train"),
}


class UserError(Exception):
    """Bad input from the user: reported in one line, exit code 2."""


def _user_errors():
    from .atomic import OutputError
    from .errors import BundleError, InputError, RuntimeLoadError
    return (UserError, ValueError, InputError, BundleError, RuntimeLoadError, FileNotFoundError,
            OutputError)


def _forward(name: str, argv: list[str]) -> int:
    mod_name, fn, _, extra = FORWARD[name]
    try:
        mod = importlib.import_module(mod_name)
    except ModuleNotFoundError as exc:
        hint = ("install the training extra: pip install 'oat_edge[train]'" if extra == "train"
                else "this build of oat_edge does not include it")
        raise UserError(f"'oat-edge {name}' needs module {exc.name!r}: {hint}") from None
    rc = getattr(mod, fn)(argv)
    return int(rc or 0)


# ------------------------------------------------------------------------------- inspect

def _read_manifest(path: str) -> dict:
    # Always the validating loader: inspect must accept exactly the bundles Policy() accepts.
    from .manifest import load_manifest
    return load_manifest(path)


def cmd_inspect(a) -> int:
    m = _read_manifest(a.bundle)
    if a.json:
        print(json.dumps(m, indent=2, sort_keys=True))
        return 0
    tok, pol = m.get("tokenizer", {}), m.get("policy", {})
    print(f"bundle      {os.path.abspath(a.bundle)}")
    print(f"format      {m.get('format')} v{m.get('format_version')}  ({m.get('producer')})")
    print(f"tokenizer   {tok.get('kind')}  K={tok.get('num_tokens')}  "
          f"fsq={tok.get('fsq_levels')}  codebook={tok.get('codebook_size')}  "
          f"chunk={tok.get('horizon')}x{tok.get('action_dim')}")
    print(f"policy      {pol.get('n_layers')} layers x {pol.get('n_heads')} heads x "
          f"{pol.get('head_dim')}  vocab={pol.get('vocab_size')}  obs={pol.get('n_obs_steps')}x"
          f"{pol.get('obs_dim')}  execute {pol.get('n_action_steps')} steps")
    print(f"precision   {m.get('precision')}   sampling {m.get('sampling')}")
    print(f"tasks       {', '.join(m.get('tasks') or []) or '-'}")
    for i, inp in enumerate((m.get("observation") or {}).get("inputs", [])):  # a camera bundle
        crop = f"  crop {inp['crop'][0]}x{inp['crop'][1]}" if "crop" in inp else ""
        print(f"{'inputs' if i == 0 else '':12}{inp['name']}  {inp['dtype']} {inp['shape']}{crop}")
    print(f"obs layout  {m.get('obs_layout') or '-'}")
    if "control_hz" in m:  # recorded from a dataset's fps
        print(f"control     {m['control_hz']:g} Hz (the rate the training data was recorded at)")
    norm = m.get("normalization", {})
    if "action_low" in norm:
        print(f"actions     low {norm['action_low']}  high {norm['action_high']}")
    print(f"files       {m.get('files')}")
    return 0


# ------------------------------------------------------------------------------- eval

def cmd_eval(a) -> int:
    from .atomic import OutputError
    from .measure.evaluate import evaluate, markdown_table
    try:
        res = evaluate(a.bundle, tasks=a.tasks, episodes=a.episodes, ks=a.ks,
                       latency_budget_ms=a.latency_budget_ms, hz=a.hz, workers=a.workers,
                       seed=a.seed, out_dir=a.out, expert=not a.no_expert,
                       background=not a.sync, threads=a.threads,
                       progress=False if a.quiet or a.no_progress else "auto",
                       n_action_steps=a.n_action_steps, force=a.force, record=a.record,
                       record_dir=a.record_dir, record_camera=a.record_camera,
                       record_format=a.record_format, temperature=a.temperature)
    except OutputError as exc:
        if hasattr(exc, "results"):  # measured, but not saved (a full disk): show it at least
            print(markdown_table(exc.results))
        raise
    print(markdown_table(res))
    if res["interrupted"]:
        print(f"oat-edge: interrupted: the finished episodes are in "
              f"{os.path.join(a.out, 'results.json')} (+ results.md)", file=sys.stderr)
        return 130
    print(f"wrote {os.path.join(a.out, 'results.json')} (+ results.md, *.png)")
    videos = [v for cells in res["per_task"].values() for c in cells.values() for v in c.get("videos", [])]
    if videos:
        print(f"wrote {len(videos)} videos to {res['record_dir']}")
    return 0


# ------------------------------------------------------------------------------- run

def cmd_run(a) -> int:
    from .live_run import run
    return run(a)


# ------------------------------------------------------------------------------- doctor

def cmd_doctor(a) -> int:
    from .doctor import Host, ready, report, run_checks
    checks = run_checks(Host(), a.bundle, device=a.device, ort_library=a.ort_library,
                        rt_priority=a.rt_priority, hz=a.hz, iters=a.iters, max_tokens=a.max_tokens,
                        latency_budget_ms=a.latency_budget_ms, threads=a.threads)
    print(report(checks, a.json))
    return 0 if ready(checks) else 1


# ------------------------------------------------------------------------------- parser

def _positive_int(s):
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {s}")
    return v


def _positive_float(s):
    v = float(s)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {s}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="oat-edge",
        description="Ordered Action Tokenization policies on the edge: collect demos, train, "
                    "export a bundle, then evaluate, benchmark or run it in a fixed-rate loop.",
        epilog="Pipeline: demos -> train-tokenizer -> train-policy -> export -> inspect / eval / "
               "bench / run.  'oat-edge SUBCOMMAND --help' explains each step.")
    sub = p.add_subparsers(dest="command", metavar="SUBCOMMAND")
    for name, (_, _, help_, extra) in FORWARD.items():
        sub.add_parser(name, help=f"{help_} (needs the {extra} install; flags: "
                                  f"oat-edge {name} --help)", add_help=False)
    for add in (_add_inspect_parser, _add_doctor_parser, _add_eval_parser, _add_run_parser):
        add(sub)
    return p


def _add_loop_flags(q):
    """The flags eval and run share: rate, budget, threads, seed, threading, output."""
    q.add_argument("--hz", type=_positive_float, default=50.0, help="control rate (default 50)")
    q.add_argument("--latency-budget-ms", type=_positive_float, default=None,
                   help="anytime inference: stop decoding tokens when this budget is spent")
    q.add_argument("--threads", type=_positive_int, default=1,
                   help="inference threads per policy (default 1)")
    q.add_argument("--seed", type=int, default=0, help="episode layout + sampling seed")
    q.add_argument("--sync", action="store_true",
                   help="infer inline in the cycle instead of in a background worker")
    q.add_argument("--quiet", action="store_true", help="no progress / live output")


def _add_inspect_parser(sub):
    """`oat-edge inspect BUNDLE`: print a manifest."""
    q = sub.add_parser("inspect", help="print a bundle's manifest",
                       description="Print the manifest of a bundle (directory or model.onnx).")
    q.add_argument("bundle", help="bundle directory or its model.onnx")
    q.add_argument("--json", action="store_true", help="print the raw manifest JSON")
    q.set_defaults(fn=cmd_inspect)


def _add_doctor_parser(sub):
    """`oat-edge doctor [BUNDLE]`: is this computer ready."""
    q = sub.add_parser("doctor", help="check this computer is ready to run a bundle in real time",
                       description="One line per check (pass / warn / fail, with the fix): ONNX "
                       "Runtime library, execution providers, real-time privileges, CPU governor and "
                       "isolated cores, Jetson power mode and clocks, and with a BUNDLE the p50/p99 "
                       "of act() against the control period. Exit 0 when nothing failed, 1 otherwise.")
    q.add_argument("bundle", nargs="?", default=None, help="bundle directory or its model.onnx (optional)")
    q.add_argument("--json", action="store_true", help="print the checks as JSON (fleet tooling)")
    q.add_argument("--device", default="cpu", choices=["cpu", "cuda", "tensorrt"],
                   help="the device the robot will run on (default cpu)")
    q.add_argument("--ort-library", default=None, help="the libonnxruntime.so to check "
                   "(default: $OAT_EDGE_ORT_LIBRARY, the onnxruntime wheel, then the system)")
    q.add_argument("--rt-priority", type=int, default=50, choices=range(1, 100), metavar="1-99",
                   help="the SCHED_FIFO priority the loop will ask for (default 50)")
    q.add_argument("--hz", type=_positive_float, default=None,
                   help="control rate to compare act() latency with when the bundle records none")
    q.add_argument("--iters", type=_positive_int, default=200, help="act() calls timed (default 200)")
    q.add_argument("--max-tokens", type=_positive_int, default=None,
                   help="tokens decoded per act() (default: all K)")
    q.add_argument("--latency-budget-ms", type=_positive_float, default=None,
                   help="anytime inference budget per act(), as the loop will use it")
    q.add_argument("--threads", type=_positive_int, default=1, help="inference threads (default 1)")
    q.set_defaults(fn=cmd_doctor)


def _add_eval_parser(sub):
    """`oat-edge eval BUNDLE`: closed-loop success vs k."""
    q = sub.add_parser("eval", help="closed-loop Meta-World success vs number of tokens",
                       description="Evaluate a bundle in Meta-World for each prefix length k: "
                       "success rate, expert success on the same seeds, act latency, overruns. "
                       "A camera bundle sees Meta-World through the cameras its manifest names. "
                       "Writes results.json, results.md and PNG plots to --out; --record adds "
                       "videos of episodes.")
    q.add_argument("bundle", help="bundle directory or its model.onnx")
    q.add_argument("--tasks", nargs="+", default=None, help="tasks (default: the bundle's)")
    from .measure.evaluate import EvalConfig as E  # numpy only, like the rest of eval
    q.add_argument("--episodes", type=_positive_int, default=E.episodes,
                   help=f"episodes per (task, k) (default {E.episodes})")
    q.add_argument("--ks", type=_positive_int, nargs="+", default=list(E.ks),
                   help=f"prefix lengths to evaluate (default {' '.join(map(str, E.ks))})")
    q.add_argument("--workers", type=_positive_int, default=E.workers,
                   help=f"parallel processes (default {E.workers})")
    q.add_argument("--out", default=E.out_dir, help=f"output directory (default {E.out_dir})")
    q.add_argument("--force", action="store_true",
                   help="replace the results already in --out (refused otherwise)")
    q.add_argument("--no-progress", action="store_true",
                   help="no progress bar (it is off anyway when stderr is not a terminal)")
    q.add_argument("--no-expert", action="store_true", help="skip the scripted-expert baseline")
    q.add_argument("--n-action-steps", type=_positive_int, default=None,
                   help="receding horizon: execute this many steps of each chunk, then replan "
                        "(default: the bundle's n_action_steps)")
    q.add_argument("--temperature", type=float, default=None, metavar="T",
                   help="sampling temperature of every act() (0 = greedy; default: the bundle's "
                        "sampling settings)")
    q.add_argument("--record", type=int, default=0, metavar="N",
                   help="also write a video (MP4, or GIF without PyAV) of the first N episodes of "
                        "each (task, k): the scene, the policy's camera inputs, action, tokens, "
                        "act() latency and success (default 0)")
    q.add_argument("--record-dir", default=None, metavar="DIR",
                   help="directory for the videos (default OUT/videos; refused if it holds files, "
                        "unless --force)")
    q.add_argument("--record-camera", default=E.record_camera, metavar="CAMERA",
                   help=f"scene camera of the videos (default {E.record_camera})")
    q.add_argument("--record-format", choices=["mp4", "gif"], default=None,
                   help="video format (default: mp4 where PyAV can write H.264, else gif)")
    _add_loop_flags(q)
    q.set_defaults(fn=cmd_eval)


def _add_run_parser(sub):
    """`oat-edge run BUNDLE`: the fixed-rate loop against the simulator."""
    q = sub.add_parser("run", help="run a bundle at a fixed rate against the Meta-World sim",
                       description="Real-time control loop (real clock) driving the Meta-World "
                       "simulator with live stats once per second; episodes restart on success "
                       "or after 500 steps. Every option is checked before the first step. Ctrl-C or "
                       "SIGTERM stops the run, writes --csv/--json and prints the summary; the exit "
                       "status is 1 when no inference succeeded.")
    q.add_argument("bundle", help="bundle directory or its model.onnx")
    q.add_argument("--task", default=None, help="task (default: the bundle's first)")
    q.add_argument("--cycles", type=_positive_int, default=1000, help="cycles to run (default 1000)")
    q.add_argument("--max-tokens", type=_positive_int, default=None,
                   help="decode at most this many tokens per chunk (default: all K)")
    q.add_argument("--temperature", type=float, default=None,
                   help="sampling temperature (0 = greedy; default: the bundle's)")
    q.add_argument("--top-k", type=int, default=None,
                   help="sample among the k most likely tokens (default: the bundle's)")
    q.add_argument("--n-action-steps", type=_positive_int, default=None,
                   help="execute this many steps of each chunk, then replan (default: the "
                        "bundle's n_action_steps)")
    q.add_argument("--max-obs-age-ms", type=_positive_float, default=None,
                   help="never plan from an observation older than this; a stalled sensor "
                        "leads to holding the last safe action (default: two control periods)")
    q.add_argument("--device", default="cpu", choices=["cpu", "cuda", "tensorrt"],
                   help="inference device (cuda/tensorrt need onnxruntime-gpu)")
    q.add_argument("--csv", default=None, help="write per-cycle records to this CSV")
    q.add_argument("--json", default=None, help="write the summary to this JSON")
    q.add_argument("--no-telemetry", action="store_true", help="do not sample jtop telemetry")
    q.add_argument("--rt-priority", type=int, default=None, choices=range(1, 100),
                   metavar="1-99", help="run the control thread under SCHED_FIFO at this "
                   "priority (needs root/CAP_SYS_NICE; keeps jitter < 1 ms on a loaded machine)")
    q.add_argument("--rt-memory", action="store_true",
                   help="before loading: keep malloc's pages in the process (no trim, no mmap) and "
                   "lock all memory when permitted (ulimit -l unlimited or CAP_IPC_LOCK), so no "
                   "allocation inside inference reaches the kernel")
    _add_loop_flags(q)
    q.set_defaults(fn=cmd_run)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in FORWARD:
            return _forward(argv[0], argv[1:])
        parser = build_parser()
        a = parser.parse_args(argv)
        if a.command is None:
            parser.print_help()
            return 2
        return a.fn(a)
    except SystemExit as exc:  # argparse (ours or a forwarded one): already printed
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except _user_errors() as exc:
        print(f"oat-edge: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("oat-edge: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `oat-edge ... | head`: the reader left, nothing to report
        sys.stderr.close()
        return 141


if __name__ == "__main__":
    sys.exit(main())
