"""Paths of the committed datasets and frame makers shared by the data tests."""
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")
V30 = os.path.join(FIXTURES, "lerobot_v30")      # written by lerobot 0.4.4 itself
V21 = os.path.join(FIXTURES, "lerobot_v21")      # written per the v2.1 layout
ROBOMIMIC = os.path.join(FIXTURES, "robomimic.hdf5")
CAMERA = "observation.images.front"


def smooth_frames(n, size=32, seed=0):
    """Codec-friendly frames (smooth gradients that move), uint8 [n, size, size, 3]."""
    y, x = np.mgrid[0:size, 0:size]
    out = []
    for t in range(n):
        r = 127 + 100 * np.sin((x + 2 * t + seed) / 5.0)
        g = 127 + 100 * np.cos((y - t) / 6.0)
        b = np.full_like(r, (20 * seed + 7 * t) % 255)
        out.append(np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8))
    return np.stack(out)
