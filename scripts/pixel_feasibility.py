"""Measurements behind docs/CAMERAS.md: what learning Meta-World from pixels costs on this CPU.

    .venv/bin/python scripts/pixel_feasibility.py [--out docs/cameras] [--quick]

1. render time per camera and resolution (headless EGL, shadows/reflections/multisampling off),
   and the corner camera at 64x64 with MuJoCo's default shadows and 4x multisampling;
2. whether the goal is drawn: pixels that change when the goal marker is hidden, per task;
3. rendering cost per scripted-expert demo episode (2 cameras vs none);
4. one training step (forward + backward + AdamW) of observation encoder + AR policy at batch 64
   on 64x64 frames: 1 camera, 2 cameras, 2 cameras sharing one encoder, and ResNet-18;
5. the exported two-camera prefill graph: node count, ONNX Runtime vs PyTorch eager latency;
6. a probe: held-out error of goal and object positions regressed from 64x64 frames (+ the hand's
   position) by the default encoder, with both cameras and with each alone;
and writes a PNG of every camera's 64x64 frame per task (shown at 2x) to --out.
Prints markdown tables. The machine is shared, so the load average is printed with each table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")  # for mujoco.Renderer (the default-settings row)

TASKS = ["reach-v3", "push-v3", "pick-place-v3"]
CAMERAS = ["corner", "corner2", "corner3", "topview", "behindGripper", "gripperPOV"]
PARTS = ["frames", "render", "goal", "demo", "train", "prefill", "probe"]


def _load():
    return "load average %.1f %.1f %.1f" % os.getloadavg()


def _median_ms(fn, n):
    fn()  # first call allocates
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return 1e3 * statistics.median(ts)


def render_costs(sizes, n):
    import mujoco
    from oat_edge.sim.camera import CameraRenderer
    from oat_edge.sim.metaworld_env import MetaWorldEnv

    env = MetaWorldEnv("pick-place-v3")
    env.reset(0)
    mw = env._mw
    print(f"\n### Render time per frame, ms (median of {n}; {_load()})\n")
    print("| camera | " + " | ".join(f"{s}x{s}" for s in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for cam in CAMERAS:
        row = []
        for s in sizes:
            with CameraRenderer(mw.model, mw.data, [cam], s, s) as r:
                row.append(_median_ms(lambda: r.render(cam), n))
        print(f"| {cam} | " + " | ".join(f"{v:.1f}" for v in row) + " |")
    # MuJoCo's own renderer with its defaults, for comparison: 4x multisampling, shadows on.
    mw.model.vis.quality.offsamples = 4
    r = mujoco.Renderer(mw.model, 64, 64)
    r.update_scene(mw.data, camera="corner")

    def default_render():
        r.update_scene(mw.data, camera="corner")
        r.render()
    print(f"| corner, MuJoCo defaults (shadows, 4x MSAA) | {_median_ms(default_render, n):.1f} | |")
    r.close()
    env.close()
    step_costs(n)


def step_costs(n):
    """A simulator step with and without the two default cameras' frames (the arm moving)."""
    from oat_edge.sim.camera import PixelMetaWorldEnv

    with PixelMetaWorldEnv("push-v3") as env:
        env.reset(0)
        action = np.array([0.1, 0.0, 0.0, 0.0])

        def step(render):
            if env.done:
                env.reset(0)
            env.step(action, render=render)
        with_frames = _median_ms(lambda: step(True), n)
        without = _median_ms(lambda: step(False), n)
    threads = os.environ.get("LP_NUM_THREADS", "llvmpipe default")
    print(f"\nsimulator step + corner + topview at 64x64: {with_frames:.1f} ms; step alone "
          f"{without:.2f} ms (LP_NUM_THREADS: {threads})")


def goal_visibility(cameras, size, seeds):
    from oat_edge.sim.camera import PixelMetaWorldEnv

    print(f"\n### Goal marker pixels at {size}x{size} (min / median over {len(seeds)} seeds)\n")
    print("| task | " + " | ".join(cameras) + " |")
    print("|---|" + "---|" * len(cameras))
    for task in TASKS:
        counts = {c: [] for c in cameras}
        with PixelMetaWorldEnv(task, cameras=cameras, image_size=(size, size)) as env:
            model = env.state_env._mw.model
            goal = model.site("goal").id
            for seed in seeds:
                env.reset(seed)
                rgba = model.site_rgba[goal].copy()
                shown = {c: env.renderer.render(c).astype(int) for c in cameras}
                model.site_rgba[goal, 3] = 0
                for c in cameras:
                    diff = np.abs(shown[c] - env.renderer.render(c)).sum(-1)
                    counts[c].append(int((diff > 30).sum()))
                model.site_rgba[goal] = rgba
        print(f"| {task} | " + " | ".join(f"{min(v)} / {statistics.median(v):g}"
                                          for v in counts.values()) + " |")


def save_frames(out, seed=3):
    from oat_edge.sim.camera import PixelMetaWorldEnv
    from PIL import Image

    os.makedirs(out, exist_ok=True)
    for size in (64,):
        rows = []
        for task in TASKS:
            with PixelMetaWorldEnv(task, cameras=CAMERAS, image_size=(size, size)) as env:
                obs = env.reset(seed)
                rows.append(np.concatenate([obs[f"observation.images.{c}"][-1] for c in CAMERAS], 1))
        img = Image.fromarray(np.concatenate(rows, 0))
        img = img.resize((img.width * 2, img.height * 2), Image.NEAREST)
        path = os.path.join(out, f"frames_{size}.png")
        img.save(path + ".tmp.png")
        os.replace(path + ".tmp.png", path)
        print(f"wrote {path} (rows: {', '.join(TASKS)}; columns: {', '.join(CAMERAS)})")


def demo_costs(cameras, size, episodes):
    from metaworld.policies import ENV_POLICY_MAP
    from oat_edge.sim.camera import PixelMetaWorldEnv
    from oat_edge.sim.metaworld_env import MetaWorldEnv

    print(f"\n### Scripted-expert demo episode, {len(cameras)} cameras at {size}x{size} vs state "
          f"only ({episodes} episodes per task; {_load()})\n")
    print("| task | mean steps | state only, s/episode | with cameras, s/episode | render share |")
    print("|---|---|---|---|---|")
    for task in TASKS:
        expert = ENV_POLICY_MAP[task]()
        times = {}
        steps = []
        for name, make in (("state", lambda: MetaWorldEnv(task)),
                           ("pixels", lambda: PixelMetaWorldEnv(task, cameras=cameras,
                                                                image_size=(size, size)))):
            env = make()
            t = time.perf_counter()
            for seed in range(episodes):
                env.reset(seed)
                while not env.done:
                    env.step(np.clip(expert.get_action(env.raw_obs), -1, 1))
                if name == "state":
                    steps.append(env.steps)
            times[name] = (time.perf_counter() - t) / episodes
            env.close()
        share = 1 - times["state"] / times["pixels"]
        print(f"| {task} | {statistics.mean(steps):.0f} | {times['state']:.2f} | "
              f"{times['pixels']:.2f} | {100 * share:.0f}% |")


def train_step_costs(batch, size, n, threads, device):
    import torch
    from oat_edge.train.observation import (
        CameraInput,
        ObservationEncoder,
        ObservationEncoderConfig,
        ObservationSpec,
        StateInput,
    )
    from oat_edge.train.policy import ARPolicy, PolicyConfig
    from oat_edge.train.vision import VisionConfig
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_num_threads(threads)
    where = f"{threads} CPU threads" if device == "cpu" else torch.cuda.get_device_name()
    print(f"\n### One training step at batch {batch}, {size}x{size} frames, n_obs_steps 2, "
          f"{where} (median of {n}; {_load()})\n")
    print("| encoder | cameras | encoder params | GFLOP per step | fwd+bwd+AdamW, ms | steps in 40 min |")
    print("|---|---|---|---|---|---|")
    rows = [("tiny (default)", VisionConfig(), ["corner"], False),
            ("tiny (default)", VisionConfig(), ["corner", "topview"], False),
            ("tiny, shared", VisionConfig(), ["corner", "topview"], True),
            ("ResNet-18", VisionConfig.resnet18(), ["corner"], False)]
    for label, vcfg, cams, shared in rows:
        torch.manual_seed(0)
        spec = ObservationSpec(2, StateInput(7), tuple(CameraInput(c, size, size) for c in cams))
        enc = ObservationEncoder(spec, ObservationEncoderConfig(vcfg, shared_vision=shared))
        pol = ARPolicy(PolicyConfig(obs_dim=enc.feature_dim, width=128, n_layers=4, n_heads=4))
        enc, pol = enc.to(device).train(), pol.to(device).train()
        opt = torch.optim.AdamW([*enc.parameters(), *pol.parameters()], lr=1e-4)
        obs = {"observation.state": torch.randn(batch, 2, 7, device=device)}
        for c in cams:
            obs[f"observation.images.{c}"] = torch.randint(0, 256, (batch, 2, size, size, 3),
                                                           dtype=torch.uint8, device=device)
        ids = torch.randint(0, 1000, (batch, 8), device=device)

        def step():
            loss, _ = pol.loss(enc(obs), ids)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if device != "cpu":
                torch.cuda.synchronize()
        with FlopCounterMode(display=False) as flops:
            step()
        ms = _median_ms(step, n if label != "ResNet-18" or device != "cpu" else max(2, n // 4))
        params = sum(p.numel() for p in enc.parameters())
        print(f"| {label} | {len(cams)} | {params / 1e6:.2f} M | {flops.get_total_flops() / 1e9:.1f} | "
              f"{ms:.0f} | {int(2400e3 / ms)} |")


def prefill_latency(n):
    """The exported prefill (2 cameras, default encoder, recipe-size policy) in ONNX Runtime on
    one thread vs PyTorch eager on one thread, interleaved, batch 1."""
    import tempfile

    import onnx
    import onnxruntime as ort
    import torch
    from oat_edge.train.observation import (
        CameraInput,
        ObservationEncoder,
        ObservationPrefill,
        ObservationSpec,
        StateInput,
    )
    from oat_edge.train.policy import ARPolicy, PolicyConfig

    torch.manual_seed(0)
    torch.set_num_threads(1)
    spec = ObservationSpec(2, StateInput(7), (CameraInput("corner", 64, 64),
                                              CameraInput("topview", 64, 64)))
    enc = ObservationEncoder(spec)
    pol = ARPolicy(PolicyConfig(obs_dim=enc.feature_dim, width=128, n_layers=4, n_heads=4))
    model = ObservationPrefill(enc, pol).eval()
    args = (torch.randn(1, 2, 7), *(torch.randint(0, 256, (1, 2, 64, 64, 3), dtype=torch.uint8)
                                    for _ in spec.cameras))
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "prefill.onnx")
        torch.onnx.export(model, args, path, input_names=spec.names, output_names=["mem_k", "mem_v"],
                          dynamic_axes={k: {0: "B"} for k in spec.names}, opset_version=17,
                          dynamo=False)
        nodes = len(onnx.load(path).graph.node)
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    feed = {k: a.numpy() for k, a in zip(spec.names, args)}
    ort_ts, pt_ts = [], []
    for i in range(n + 20):
        t = time.perf_counter()
        sess.run(None, feed)
        t1 = time.perf_counter()
        with torch.no_grad():
            model(*args)
        t2 = time.perf_counter()
        if i >= 20:  # first runs allocate
            ort_ts.append(t1 - t)
            pt_ts.append(t2 - t1)
    med = lambda ts: 1e3 * statistics.median(ts)  # noqa: E731
    print(f"\n### Prefill, 2 cameras at 64x64, batch 1, 1 thread (median of {n}; {_load()})\n")
    print(f"exported graph: {nodes} nodes; ONNX Runtime {med(ort_ts):.2f} ms, "
          f"PyTorch eager {med(pt_ts):.2f} ms")


def _probe_data(cameras, layouts, seed=0):
    """Frames of random layouts with the arm moved at random, and where goal and object are."""
    from oat_edge.sim.camera import PixelMetaWorldEnv

    rng = np.random.default_rng(seed)
    frames = {c: [] for c in cameras}
    state, target = [], []
    for task in TASKS:
        with PixelMetaWorldEnv(task, cameras=cameras, image_size=(64, 64), n_obs_steps=1) as env:
            for i in range(layouts):
                obs = env.reset(seed * 100_000 + i)
                moves = int(rng.integers(0, 30))
                for k in range(moves):  # only the last frame is used
                    obs = env.step(rng.uniform(-1, 1, 4), render=k == moves - 1) or obs
                for c in cameras:
                    frames[c].append(obs[f"observation.images.{c}"])
                state.append(obs["observation.state"][:, :4])
                goal = env.state_env._mw._target_pos
                target.append(np.concatenate([goal, env.raw_obs[4:7]]).astype(np.float32))
    return ({c: np.stack(v) for c, v in frames.items()}, np.stack(state).astype(np.float32),
            np.stack(target))


def pixel_probe(layouts, steps, threads, camera_sets):
    """Can the default encoder find goal and object in 3-D from 64x64 frames? Regress both from
    pixels (+ the hand's own position) on random layouts, report held-out error."""
    import torch
    from oat_edge.train.observation import CameraInput, ObservationEncoder, ObservationSpec, StateInput

    torch.set_num_threads(threads)
    frames, state, target = _probe_data(["corner", "topview"], layouts)
    n = len(target)
    perm = np.random.default_rng(1).permutation(n)
    test, train = perm[: n // 5], perm[n // 5:]
    # A floor of 1 cm: the object's height barely varies, and dividing by its tiny spread would
    # let that one coordinate's noise dominate the loss.
    mu, sd = target[train].mean(0), np.maximum(target[train].std(0), 0.01)
    print(f"\n### Goal and object position from pixels: {len(train)} training / {len(test)} held-out "
          f"layouts, {steps} steps at batch 64, {threads} thread(s) ({_load()})\n")
    base = 100 * np.abs(target[train].mean(0) - target[test]).mean(0)
    print("| cameras | goal error, cm (mean abs x / y / z) | object error, cm (x / y / z) |")
    print("|---|---|---|")
    print(f"| none (predict the training mean) | {base[0]:.1f} / {base[1]:.1f} / {base[2]:.1f} | "
          f"{base[3]:.1f} / {base[4]:.1f} / {base[5]:.1f} |")
    for cams in camera_sets:
        torch.manual_seed(0)
        spec = ObservationSpec(1, StateInput(4), tuple(CameraInput(c, 64, 64) for c in cams))
        enc = ObservationEncoder(spec)
        head = torch.nn.Linear(enc.feature_dim, 6)
        opt = torch.optim.AdamW([*enc.parameters(), *head.parameters()], lr=1e-3, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-3, total_steps=steps)
        tgt = torch.from_numpy((target - mu) / sd)
        g = torch.Generator().manual_seed(0)

        def batch(idx):
            obs = {"observation.state": torch.from_numpy(state[idx])}
            for c in cams:
                obs[f"observation.images.{c}"] = torch.from_numpy(frames[c][idx])
            return obs
        enc.train()
        for _ in range(steps):
            idx = train[torch.randint(0, len(train), (64,), generator=g).numpy()]
            loss = torch.nn.functional.smooth_l1_loss(head(enc(batch(idx), g)[:, -1]), tgt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        enc.eval()
        with torch.no_grad():
            pred = head(enc(batch(test))[:, -1]).numpy() * sd + mu
        err = 100 * np.abs(pred - target[test]).mean(0)
        print(f"| {' + '.join(cams)} | {err[0]:.1f} / {err[1]:.1f} / {err[2]:.1f} | "
              f"{err[3]:.1f} / {err[4]:.1f} / {err[5]:.1f} |", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="docs/cameras", help="where the frame PNGs go")
    p.add_argument("--quick", action="store_true", help="fewer repetitions")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="for the training step: cpu or cuda")
    p.add_argument("--only", nargs="+", choices=PARTS, default=PARTS)
    p.add_argument("--probe-steps", type=int, default=None, help="probe training steps (800)")
    p.add_argument("--probe-cameras", nargs="+", default=["corner+topview", "corner", "topview"],
                   help="camera sets the probe compares, each like corner+topview")
    a = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    n = 10 if a.quick else 50
    if "frames" in a.only:
        save_frames(a.out)
    if "render" in a.only:
        render_costs([64, 96, 128, 224], n)
    if "goal" in a.only:
        goal_visibility(["corner", "topview", "corner2", "behindGripper"], 64,
                        range(5 if a.quick else 20))
    if "demo" in a.only:
        demo_costs(["corner", "topview"], 64, 2 if a.quick else 5)
    if "train" in a.only:
        train_step_costs(64, 64, 3 if a.quick else 10, a.threads, a.device)
    if "prefill" in a.only:
        prefill_latency(30 if a.quick else 300)
    if "probe" in a.only:
        sets = [c.split("+") for c in a.probe_cameras]
        pixel_probe(40 if a.quick else 500, a.probe_steps or (30 if a.quick else 800), a.threads, sets)


if __name__ == "__main__":
    main()
