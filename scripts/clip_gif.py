"""An MP4 written by `oat-edge eval --record` as an animated GIF, for pages that show images
inline (the README): every --every-th frame, same size, looping.
    python scripts/clip_gif.py docs/clips/reach-v3_k8_seed0_ep02.mp4 [--every 3] [--out X.gif]"""
import argparse
import os
import sys

import av
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
from oat_edge.atomic import atomic_path  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mp4")
    ap.add_argument("--every", type=int, default=3, help="keep every N-th frame (default 3)")
    ap.add_argument("--out", help="default: the MP4's path with .gif")
    a = ap.parse_args(argv)
    if a.every < 1:
        ap.error(f"--every must be >= 1, got {a.every}")
    with av.open(a.mp4) as f:
        stream = f.streams.video[0]
        fps = float(stream.average_rate or 50)
        frames = [fr.to_image() for i, fr in enumerate(f.decode(stream)) if i % a.every == 0]
    if not frames:
        sys.exit(f"{a.mp4}: no video frames")
    out = a.out or os.path.splitext(a.mp4)[0] + ".gif"
    pal = [im.convert("P", palette=Image.Palette.ADAPTIVE, colors=64) for im in frames]
    with atomic_path(out) as tmp:
        pal[0].save(tmp, format="GIF", save_all=True, append_images=pal[1:], loop=0,
                    duration=round(1000 * a.every / fps), optimize=True)
    print(f"wrote {out}: {len(frames)} frames, {os.path.getsize(out) // 1024} KiB")


if __name__ == "__main__":
    main()
