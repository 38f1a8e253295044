"""Make the robomimic-layout HDF5 fixture with h5py, per robomimic's documented dataset structure:
    data                 attrs: total (frames), env_args (JSON: env_name, env_kwargs.control_freq)
    data/demo_<i>        attrs: num_samples
        actions [T, 7]   obs/robot0_eef_pos [T, 3]   obs/robot0_gripper_qpos [T, 2]
        obs/agentview_image uint8 [T, 32, 32, 3]     states [T, 10]   rewards [T]   dones [T]
    mask/train, mask/valid   demo names (bytes)
Demos are written out of numeric order (demo_10 before demo_2) to pin down the reader's ordering.
    .venv/bin/python tests/data/make_robomimic_fixture.py
"""

import json
import os
import sys

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "robomimic.hdf5")
DEMOS = {"demo_10": 9, "demo_2": 6, "demo_1": 7}


def main():
    rng = np.random.default_rng(3)
    tmp = OUT + ".tmp"
    with h5py.File(tmp, "w") as f:
        data = f.create_group("data")
        data.attrs["total"] = sum(DEMOS.values())
        data.attrs["env_args"] = json.dumps({"env_name": "Lift", "type": 1,
                                             "env_kwargs": {"control_freq": 20}})
        for name, n in DEMOS.items():
            g = data.create_group(name)
            g.attrs["num_samples"] = n
            g["actions"] = rng.uniform(-1, 1, (n, 7))
            g["states"] = rng.normal(size=(n, 10))
            g["rewards"] = np.zeros(n)
            g["dones"] = np.eye(1, n, n - 1).reshape(n).astype(np.int64)
            g["obs/robot0_eef_pos"] = rng.normal(size=(n, 3))
            g["obs/robot0_gripper_qpos"] = rng.normal(size=(n, 2))
            g["obs/agentview_image"] = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        f["mask/train"] = np.array([b"demo_1", b"demo_10"])
        f["mask/valid"] = np.array([b"demo_2"])
    os.replace(tmp, OUT)
    print(f"wrote {OUT} ({os.path.getsize(OUT) / 1024:.0f} KB)")


if __name__ == "__main__":
    sys.exit(main())
