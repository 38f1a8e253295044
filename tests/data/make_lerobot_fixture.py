"""Make the LeRobot v3.0 fixture with the `lerobot` package itself (not our writer), and save
what lerobot's own reader returns beside it, so our reader can be compared with the library's.

Run once, in a separate environment that has lerobot (never a dependency of oat_edge):
    python3 -m venv /tmp/lerobot-venv && /tmp/lerobot-venv/bin/pip install lerobot==0.4.4
    /tmp/lerobot-venv/bin/python tests/data/make_lerobot_fixture.py
Writes tests/data/fixtures/lerobot_v30/ (3 episodes of 7, 9 and 11 frames at 10 fps: a 6-d state,
a 3-d action, a 32x32 camera video, two task strings) and tests/data/fixtures/lerobot_v30.npz.
"""

import os
import shutil
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "lerobot_v30")
EXPECTED = os.path.join(HERE, "fixtures", "lerobot_v30.npz")
CAMERA = "observation.images.front"
LENGTHS = (7, 9, 11)
TASKS = ("pick up the cube", "open the drawer", "pick up the cube")


def frame_image(e, t, size=32):
    """A smooth moving pattern (codec-friendly, unlike noise), different in every frame."""
    y, x = np.mgrid[0:size, 0:size]
    r = 127 + 100 * np.sin((x + 3 * t + 10 * e) / 5.0)
    g = 127 + 100 * np.cos((y - 2 * t) / 6.0)
    b = np.full_like(r, 40.0 * e + 5 * t)
    return np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8)


def main():
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    shutil.rmtree(OUT, ignore_errors=True)
    features = {
        "observation.state": {"dtype": "float32", "shape": (6,), "names": [f"q{i}" for i in range(6)]},
        "action": {"dtype": "float32", "shape": (3,), "names": ["x", "y", "z"]},
        CAMERA: {"dtype": "video", "shape": (32, 32, 3), "names": ["height", "width", "channels"]},
    }
    ds = LeRobotDataset.create(repo_id="oat_edge/fixture", fps=10, features=features, root=OUT,
                               robot_type="test_arm", use_videos=True)
    rng = np.random.default_rng(0)
    for e, (n, task) in enumerate(zip(LENGTHS, TASKS)):
        for t in range(n):
            ds.add_frame({"observation.state": rng.normal(size=6).astype(np.float32),
                          "action": rng.uniform(-1, 1, size=3).astype(np.float32),
                          CAMERA: frame_image(e, t), "task": task})
        ds.save_episode()
    ds.finalize()

    # read back with lerobot's own reader (PyAV backend: torchcodec does not load here)
    back = LeRobotDataset("oat_edge/fixture", root=OUT, video_backend="pyav")
    items = [back[i] for i in range(len(back))]
    to_img = lambda x: (x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)  # noqa: E731
    ep = back.meta.episodes
    np.savez_compressed(
        EXPECTED,
        state=np.stack([it["observation.state"].numpy() for it in items]),
        action=np.stack([it["action"].numpy() for it in items]),
        frames=np.stack([to_img(it[CAMERA]) for it in items]),
        episode_index=np.array([int(it["episode_index"]) for it in items]),
        frame_index=np.array([int(it["frame_index"]) for it in items]),
        task=np.array([it["task"] for it in items]),
        dataset_from_index=np.asarray(ep["dataset_from_index"]),
        dataset_to_index=np.asarray(ep["dataset_to_index"]),
        source_frames=np.stack([frame_image(e, t) for e, n in enumerate(LENGTHS)
                                for t in range(n)]),
        fps=back.fps)
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"wrote {OUT} ({size / 1024:.0f} KB, {len(back)} frames) and {EXPECTED}")


if __name__ == "__main__":
    sys.exit(main())
