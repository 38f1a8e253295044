"""Check that `lerobot` itself loads a dataset written by oat_edge's LeRobot v3.0 writer, with the
same states, actions, tasks and episode boundaries, and camera frames equal to what our reader
decodes. Run in a separate environment that has lerobot (never a dependency of oat_edge):
    /tmp/lerobot-venv/bin/python tests/data/lerobot_loads_our_dataset.py [DATASET_DIR]
Without DATASET_DIR it writes a small synthetic dataset with a camera to a temporary directory.
Prints one line per check and exits 1 on the first mismatch.
"""

import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from oat_edge.data import open_dataset  # noqa: E402  (numpy, pyarrow, PyAV only)


def synthetic(out):
    from make_lerobot_fixture import frame_image
    from oat_edge.data.lerobot_writer import write_lerobot
    rng = np.random.default_rng(1)
    eps = [{"observation.state": rng.normal(size=(n, 5)).astype(np.float32),
            "action": rng.uniform(-1, 1, size=(n, 4)).astype(np.float32),
            "observation.images.corner": np.stack([frame_image(e, t, 64) for t in range(n)]),
            "task": ("reach-v3", "push-v3")[e % 2]} for e, n in enumerate((12, 20, 8))]
    write_lerobot(out, 80, eps, robot_type="sawyer")
    return out


def main(argv):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    path = argv[1] if len(argv) > 1 else synthetic(os.path.join(tempfile.mkdtemp(), "ours"))
    ours = open_dataset(path)
    theirs = LeRobotDataset("oat_edge/ours", root=path, video_backend="pyav")
    ok = True

    def check(what, cond):
        nonlocal ok
        print(f"{'ok  ' if cond else 'FAIL'} {what}")
        ok &= bool(cond)

    check(f"episodes {theirs.num_episodes} == {ours.num_episodes}",
          theirs.num_episodes == ours.num_episodes)
    check(f"frames {theirs.num_frames} == {ours.num_frames}", theirs.num_frames == ours.num_frames)
    check(f"fps {theirs.fps} == {ours.fps}", float(theirs.fps) == ours.fps)
    ep = theirs.meta.episodes
    check("episode boundaries", np.array_equal(np.asarray(ep["dataset_to_index"]),
                                               ours.episode_ends))
    items = [theirs[i] for i in range(len(theirs))]
    for key in [ours.action_key] + ours.state_keys:
        check(f"{key} bit-exact", np.array_equal(np.stack([it[key].numpy() for it in items]),
                                                 ours.column(key)))
    tasks = [ours.tasks[t] for t in np.repeat(ours.episode_task, ours.episode_lengths)]
    check("task strings", [it["task"] for it in items] == tasks)
    for key in ours.camera_keys:
        f = np.stack([(it[key].permute(1, 2, 0).numpy() * 255).round() for it in items])
        diff = np.abs(f - ours.frames(key, progress=False).astype(np.float64)).max()
        check(f"{key} frames equal to our decode (max abs diff {diff:.0f})", diff <= 1)
    print("lerobot loads our dataset:", "yes" if ok else "NO")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
