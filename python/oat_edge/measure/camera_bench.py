"""Latency of a camera (named-input) bundle's act(), broken into its stages: C++ runtime vs PyTorch
eager (and torch.compile) of the same model, interleaved call by call in one run, batch 1, greedy
(docs/BENCH.md).

Stages of one act(): prefill (image preprocessing + vision encoder + state + the policy's memory
K/V, all in the prefill graph), k token steps, the decoder; "other" is the rest of the call
(C++: its own code beyond ORT's Run(); PyTorch: the sampler's host copies and Python).

- C++ runtime: `oat_edge.Policy.act(dict, return_stats=True)`, whose stats time each graph's Run().
- PyTorch eager: `ObservationPrefill(encoder, policy)`, then the KV-cached step loop of
  `ARPolicy.generate` (same sampler), then `tokenizer.detokenize`, each timed around its call.
- torch.compile: the same PyTorch act() with the prefill module, the step and the decoder each
  wrapped in torch.compile, as in the state benchmark (compile time reported apart).
- Preprocessing alone (crop, uint8 -> float, mean/std of every camera) cannot be timed inside one
  Run(), so it is timed as its own call in the same rounds: for ONNX Runtime, the bundle's own
  prefill graph cut at the input of each camera's first convolution (onnx.utils.Extractor) and run
  by onnxruntime-Python on the same thread count; for PyTorch, the encoder's ImagePreprocess
  modules. The prefill column includes it.

Camera inputs are random uint8 frames and the state lies inside its normalizer's range: latency
does not depend on the values.
"""
from __future__ import annotations

import os
import time

import numpy as np

STAGES = ("act", "prefill", "steps", "decoder", "other")
# The pixel recipe's cameras (docs/CAMERAS.md): corner + topview; state = hand xyz, gripper, 3 tasks.
RECIPE_CAMERAS = ("corner", "topview")
RECIPE_STATE_DIM = 7


def reference_pixel_policy(size: int = 64, cameras=RECIPE_CAMERAS, vision: str = "default", seed: int = 0):
    """(TokenPolicy, ObservationEncoder) with the CPU pixel recipe's sizes (OATConfig and
    PolicyConfig defaults, the default image encoder, or ResNet-18 with vision="resnet18") for
    `size` x `size` frames, random weights (latency does not depend on them)."""
    import torch

    from oat_edge.train.normalizer import Normalizer
    from oat_edge.train.observation import (
        CameraInput,
        ObservationEncoder,
        ObservationEncoderConfig,
        ObservationSpec,
        StateInput,
    )
    from oat_edge.train.policy import ARPolicy, PolicyConfig, TokenPolicy
    from oat_edge.train.tokenizer import OATConfig, OATTokenizer
    from oat_edge.train.vision import VisionConfig

    if vision not in ("default", "resnet18"):
        raise ValueError(f"vision: expected 'default' or 'resnet18', got {vision!r}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    spec = ObservationSpec(2, StateInput(RECIPE_STATE_DIM), tuple(CameraInput(c, size, size) for c in cameras))
    vcfg = VisionConfig.resnet18() if vision == "resnet18" else VisionConfig()
    enc = ObservationEncoder(spec, ObservationEncoderConfig(vcfg)).eval()
    tok = OATTokenizer(OATConfig())
    tok.set_normalizer(Normalizer.fit(rng.uniform(-1, 1, size=(256, tok.cfg.action_dim))))
    pol = ARPolicy(PolicyConfig(obs_dim=enc.feature_dim, n_obs_steps=spec.n_obs_steps))
    return TokenPolicy(tok, pol, Normalizer(enc.feature_dim)).eval(), enc


def random_observation(spec: dict, seed: int = 0) -> dict:
    """{name: unbatched array [n_obs_steps, *shape]} for a manifest's observation spec: random
    frames, a state inside the normalizer's range ((x * scale + offset) in [-1, 1])."""
    rng = np.random.default_rng(seed)
    S = spec["n_obs_steps"]
    obs = {}
    for inp in spec["inputs"]:
        shape = (S, *inp["shape"])
        if inp["dtype"] == "uint8":
            obs[inp["name"]] = rng.integers(0, 256, size=shape, dtype=np.uint8)
        else:
            n = inp["normalize"]
            u = rng.uniform(-1, 1, size=shape)
            obs[inp["name"]] = ((u - np.asarray(n["offset"])) / np.asarray(n["scale"])).astype(np.float32)
    return obs


def _stem_conv_inputs(graph) -> list[str]:
    """Names of the tensors entering each first convolution (one with no convolution upstream)."""
    producer = {o: n for n in graph.node for o in n.output}
    memo: dict[str, bool] = {}

    def conv_upstream(name: str) -> bool:  # iterative: graphs can be deep
        stack, order = [name], []
        while stack:
            x = stack.pop()
            if x in memo or x not in producer:
                continue
            order.append(x)
            stack.extend(i for i in producer[x].input if i)
        for x in reversed(order):
            n = producer[x]
            memo[x] = any(producer[i].op_type == "Conv" or memo.get(i, False)
                          for i in n.input if i in producer)
        return memo.get(name, False)

    return list(dict.fromkeys(n.input[0] for n in graph.node
                              if n.op_type == "Conv" and not conv_upstream(n.input[0])))


def preprocess_graph(prefill_path: str, camera_names: list[str]):
    """The prefill graph cut at its first convolutions' inputs: the image preprocessing alone
    (ONNX ModelProto, inputs = the camera names)."""
    import onnx
    from onnx.utils import Extractor

    model = onnx.load(prefill_path)
    outs = _stem_conv_inputs(model.graph)
    if not outs:
        raise ValueError(f"{prefill_path}: no convolution found, so no image preprocessing to cut out")
    known = {v.name for v in model.graph.value_info}
    model.graph.value_info.extend(onnx.helper.make_tensor_value_info(o, onnx.TensorProto.FLOAT, None)
                                  for o in outs if o not in known)  # the extractor wants a type
    return Extractor(model).extract_model(list(camera_names), outs)


def _session(model, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


class EagerStages:
    """PyTorch eager act() of a camera policy (PixelTokenPolicy), timing prefill, steps, decoder."""

    def __init__(self, pixel_policy):
        self.tp, self.enc = pixel_policy.eval(), pixel_policy.encoder
        self.prefill = pixel_policy.prefill_module().eval()

    def act(self, obs: dict, k: int) -> tuple[np.ndarray, dict]:
        import torch

        from oat_edge import sampling

        pol, c = self.tp.policy, self.tp.policy.cfg
        with torch.no_grad():
            t0 = time.perf_counter()
            args = [torch.from_numpy(obs[n][None]) for n in self.enc.spec.names]
            mem_k, mem_v = self.prefill(*args)
            t1 = time.perf_counter()
            rng = sampling.SplitMix64(0)
            past_k, past_v = pol.empty_cache(1)
            token = torch.full((1,), c.bos_id, dtype=torch.long)
            ids = []
            for t in range(k):  # ARPolicy.generate's loop
                logits, nk, nv = pol.step(token, torch.tensor([t]), past_k, past_v, mem_k, mem_v)
                past_k[:, :, :, t:t + 1] = nk
                past_v[:, :, :, t:t + 1] = nv
                token = torch.from_numpy(sampling.sample_batch(logits.float().numpy(), c.codebook_size,
                                                               0.0, 1, rng))
                ids.append(token)
            t2 = time.perf_counter()
            actions = self.tp.tokenizer.detokenize(torch.stack(ids, 1), k)
            t3 = time.perf_counter()
        ms = {"prefill": t1 - t0, "steps": t2 - t1, "decoder": t3 - t2}
        return actions[0].numpy(), {s: 1e3 * v for s, v in ms.items()}

    def preprocess(self, obs: dict):
        import torch

        with torch.no_grad():
            return [self.enc.preprocess[c.camera](torch.from_numpy(obs[c.name][None]))
                    for c in self.enc.spec.cameras]


def compiled_stages(pixel_policy, backend="inductor") -> EagerStages:
    """EagerStages of a copy of `pixel_policy` whose prefill, step and decoder run through
    torch.compile (as the state benchmark's torch.compile row); compiles on the first calls."""
    import copy

    import torch

    c = copy.deepcopy(pixel_policy).eval()
    stages = EagerStages(c)
    stages.prefill = torch.compile(stages.prefill, backend=backend)
    c.policy.step = torch.compile(c.policy.step, backend=backend)
    c.tokenizer.decoder = torch.compile(c.tokenizer.decoder, backend=backend)
    return stages


def _warm_compiled(entry: dict, calls: dict, compiled: EagerStages, eager: EagerStages, obs, k) -> None:
    """First call of the compiled stages at k, timed into compile_s and checked against eager; on
    failure the row is dropped and entry["error"] says why."""
    from oat_edge.measure.bench import _reason

    t = time.perf_counter()
    try:
        got, _ = compiled.act(obs, k)
    except Exception as exc:  # noqa: BLE001 - any compiler failure: report it, keep benchmarking
        entry["error"] = _reason(exc)
        del calls["torch_compile"]
        return
    entry["first_call_s"][str(k)] = time.perf_counter() - t
    entry["compile_s"] += entry["first_call_s"][str(k)]
    want, _ = eager.act(obs, k)
    entry["max_abs_diff_vs_eager"] = max(entry["max_abs_diff_vs_eager"], float(np.abs(got - want).max()))


def _pct(ms) -> dict:
    a = np.asarray(ms, dtype=float)
    return {"median_ms": float(np.median(a)), "p99_ms": float(np.percentile(a, 99)), "n": int(a.size)}


def run(bundle: str, pixel_policy=None, ks=(1, 2, 4, 8), iters: int = 200, warmup: int = 10,
        threads: int = 1, seed: int = 0, bounds: bool = True, compile_backend: str | None = "inductor") -> dict:
    """Interleaved rounds of: C++ act, PyTorch eager and torch.compile acts (with pixel_policy, the
    bundle's PixelTokenPolicy; compile_backend None: no torch.compile row), ORT and PyTorch
    preprocessing alone. Returns per-k percentiles of every stage."""
    import torch

    from oat_edge import Policy
    from oat_edge import manifest as mf

    torch.set_num_threads(threads)
    manifest = mf.load_manifest(bundle)
    spec = manifest.get("observation")
    if spec is None:
        raise ValueError(f"{bundle}: expected a bundle with named camera inputs (manifest 'observation'), "
                         "got a state bundle: benchmark it with oat-edge bench BUNDLE")
    cpp = Policy(bundle, threads=threads)
    cams = [i["name"] for i in spec["inputs"] if i["dtype"] == "uint8"]
    obs = random_observation(spec, seed)
    root = bundle if os.path.isdir(bundle) else os.path.dirname(os.path.abspath(bundle))
    prefill_path = os.path.join(root, manifest["files"]["prefill"])
    pre = _session(preprocess_graph(prefill_path, cams), threads) if cams else None
    pre_feed = {n: obs[n][None] for n in cams}
    eager = EagerStages(pixel_policy) if pixel_policy is not None else None

    samples: dict = {}

    def record(backend, stats):
        for s, v in stats.items():
            samples.setdefault((backend, s), []).append(v)

    def call_cpp(k):
        t = time.perf_counter()
        _, st = cpp.act(obs, max_tokens=k, temperature=0.0, return_stats=True)
        total = 1e3 * (time.perf_counter() - t)  # from Python, as the eager row is timed
        record("cpp_runtime", {"act": total, "prefill": st["prefill_ms"], "steps": st["step_ms"],
                                  "decoder": st["decode_ms"],
                                  "other": total - st["prefill_ms"] - st["step_ms"] - st["decode_ms"]})

    def staged(name, stages):
        def call(k):
            t = time.perf_counter()
            _, st = stages.act(obs, k)
            total = 1e3 * (time.perf_counter() - t)
            record(name, {"act": total, **st, "other": total - sum(st.values())})
        return call

    def timed(name, fn):
        def call(k):
            t = time.perf_counter()
            fn()
            record(name, {"preprocess": 1e3 * (time.perf_counter() - t)})
        return call

    calls = {"cpp_runtime": call_cpp}
    res: dict = {"threads": threads, "iters": iters, "ks": list(ks), "observation": spec, "per_k": {},
                 "provider": cpp.info["provider"], "ort_version": cpp.info["ort_version"]}
    if eager is not None:
        calls["torch_eager"] = staged("torch_eager", eager)
    if eager is not None and compile_backend is not None:
        compiled = compiled_stages(pixel_policy, compile_backend)
        calls["torch_compile"] = staged("torch_compile", compiled)
        res["torch_compile"] = {"backend": getattr(compile_backend, "__name__", compile_backend),
                                "compile_s": 0.0, "first_call_s": {}, "max_abs_diff_vs_eager": 0.0}
    if pre is not None:
        calls["ort_preprocess"] = timed("ort_preprocess", lambda: pre.run(None, pre_feed))
        if eager is not None:
            calls["torch_preprocess"] = timed("torch_preprocess", lambda: eager.preprocess(obs))
    if bounds:
        from oat_edge.measure import roofline

        costs = roofline.bundle_costs(bundle)
        rates = roofline.measure_rates(costs, threads)
        res["bounds"] = {"graphs": costs, "rates": rates.to_dict()}
    for k in ks:
        if "torch_compile" in calls:
            _warm_compiled(res["torch_compile"], calls, compiled, eager, obs, k)
        names = list(calls)
        for n in names:
            for _ in range(warmup):
                calls[n](k)
        samples.clear()
        for i in range(iters):
            for n in names[i % len(names):] + names[:i % len(names)]:
                calls[n](k)
        row: dict = {}
        for (backend, stage), v in samples.items():
            row.setdefault(backend, {})[stage] = _pct(v)
        if eager is not None:
            a_cpp = cpp.act(obs, max_tokens=k, temperature=0.0)
            a_pt, _ = eager.act(obs, k)
            row["max_abs_diff_cpp_vs_eager"] = float(np.abs(a_cpp - a_pt).max())
        res["per_k"][str(k)] = row
    if bounds:
        rates = roofline.faster(rates, roofline.measure_rates(costs, threads))
        res["bounds"]["rates"] = rates.to_dict()
        for k, row in res["per_k"].items():
            row["bound"] = roofline.act_bound_ms(costs, rates, int(k))
    return res


def _cell(d: dict | None) -> str:
    return "–" if d is None else f"{d['median_ms']:.2f} / {d['p99_ms']:.2f}"


def format_table(res: dict) -> str:
    spec = res["observation"]
    shapes = ", ".join(f"{i['name'].rsplit('.', 1)[-1]} {'x'.join(map(str, i['shape']))}"
                       for i in spec["inputs"])
    lines = [f"camera bundle act(), batch 1, {res['threads']} thread(s), greedy, {res['iters']} interleaved "
             f"rounds, provider {res['provider']}, ORT {res['ort_version']}; inputs: {shapes}, "
             f"{spec['n_obs_steps']} steps of history"]
    if "bounds" in res:
        from oat_edge.measure import roofline

        lines.append(roofline.describe(res["bounds"]["graphs"], roofline.Rates(**res["bounds"]["rates"])))
    lines += ["", "median / p99 ms; prefill includes preprocessing, timed alone in its own column",
              "", "| k | backend | act() | prefill | of which preprocessing | token steps | decoder | other "
              "| act ÷ bound |", "|---|---|---|---|---|---|---|---|---|"]
    tc = res.get("torch_compile")
    if tc:
        lines.insert(1, f"torch.compile ({tc['backend']}): " + (
            f"no row, compiling failed here: {tc['error']}" if "error" in tc else
            f"{tc['compile_s']:.1f} s compiling in its first calls (excluded below), outputs within "
            f"{tc['max_abs_diff_vs_eager']:.1e} of eager"))
    labels = {"cpp_runtime": ("C++ runtime", "ort_preprocess"), "torch_eager": ("PyTorch eager", "torch_preprocess"),
              "torch_compile": ("torch.compile", None)}
    for k, r in res["per_k"].items():
        for b, (label, pre) in labels.items():
            if b not in r:
                continue
            s = r[b]
            ratio = f"{s['act']['median_ms'] / r['bound']['ms']:.1f}x" if "bound" in r else "–"
            lines.append(f"| {k} | {label} | {_cell(s['act'])} | {_cell(s['prefill'])} "
                         f"| {_cell(r.get(pre, {}).get('preprocess'))} | {_cell(s['steps'])} "
                         f"| {_cell(s['decoder'])} | {_cell(s['other'])} | {ratio} |")
        if "bound" in r:
            bd = r["bound"]
            lines.append(f"| {k} | lower bound | {bd['ms']:.2f} | {bd['prefill_ms']:.2f} | | {bd['step_ms']:.2f} "
                         f"| {bd['decoder_ms']:.2f} | | |")
        if "torch_eager" in r:
            c, t = r["cpp_runtime"]["act"]["median_ms"], r["torch_eager"]["act"]["median_ms"]
            lines.append(f"| {k} | PyTorch ÷ C++ | {t / c:.2f}x | | | | | | actions within "
                         f"{r['max_abs_diff_cpp_vs_eager']:.1e} |")
        if "torch_compile" in r:
            c, t = r["cpp_runtime"]["act"]["median_ms"], r["torch_compile"]["act"]["median_ms"]
            lines.append(f"| {k} | torch.compile ÷ C++ | {t / c:.2f}x | | | | | | |")
    return "\n".join(lines)
