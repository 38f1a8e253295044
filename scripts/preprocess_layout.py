"""Camera preprocessing in ONNX Runtime: per-channel normalization before vs after the
channels-first transpose (same values), timed interleaved with PyTorch eager, batch 1, one thread.

ImagePreprocess (python/oat_edge/train/vision.py) scales channels-last frames ([..., 3]), so ORT's
Mul/Add broadcast a 3-vector over the innermost axis; after the transpose the same vectors
broadcast over whole planes ([1, 3, 1, 1]). docs/BENCH.md quotes this script's output.

    python scripts/preprocess_layout.py [--sizes 64 224] [--iters 300]
"""
import argparse
import io
import statistics
import time
import warnings

import numpy as np
import onnxruntime as ort
import torch
from oat_edge.train.vision import ImagePreprocess


class NormalizeChannelsFirst(torch.nn.Module):
    """ImagePreprocess at inference (centre crop), normalizing after the transpose."""

    def __init__(self, p: ImagePreprocess):
        super().__init__()
        self.p = p

    def forward(self, frames):
        p, (ch, cw) = self.p, self.p.crop
        n, t = frames.shape[0], frames.shape[1]
        y0, x0 = (p.height - ch) // 2, (p.width - cw) // 2
        x = frames[:, :, y0:y0 + ch, x0:x0 + cw].reshape(n * t, ch, cw, 3).permute(0, 3, 1, 2)
        return x.to(torch.float32) * p.gain.view(1, 3, 1, 1) + p.bias.view(1, 3, 1, 1)


def session(module, x):
    f = io.BytesIO()
    warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
    torch.onnx.export(module, (x,), f, input_names=["frames"], output_names=["x"],
                      dynamic_axes={"frames": {0: "B"}}, opset_version=17, dynamo=False)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(f.getvalue(), so, providers=["CPUExecutionProvider"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 224])
    ap.add_argument("--iters", type=int, default=300)
    a = ap.parse_args()
    torch.set_num_threads(1)
    print("| frame | ORT, normalize channels-last (as exported) | ORT, normalize channels-first | PyTorch eager "
          "| max abs difference |\n|---|---|---|---|---|")
    for size in a.sizes:
        crop = round(size * 7 / 8)
        p = ImagePreprocess(size, size, (crop, crop), (0.5,) * 3, (0.5,) * 3).eval()
        x = torch.randint(0, 256, (1, 2, size, size, 3), dtype=torch.uint8)  # one camera, 2 steps
        last, first = session(p, x), session(NormalizeChannelsFirst(p), x)
        feed = {"frames": x.numpy()}
        diff = float(np.abs(last.run(None, feed)[0] - first.run(None, feed)[0]).max())
        calls = {"last": lambda: last.run(None, feed), "first": lambda: first.run(None, feed),
                 "torch": lambda: p(x)}
        ts = {k: [] for k in calls}
        with torch.no_grad():
            for i in range(a.iters + 20):
                for k, fn in calls.items():
                    t = time.perf_counter()
                    fn()
                    if i >= 20:
                        ts[k].append(1e3 * (time.perf_counter() - t))
        med = {k: statistics.median(v) for k, v in ts.items()}
        print(f"| {size}x{size} (crop {crop}) | {med['last']:.3f} ms | {med['first']:.3f} ms | "
              f"{med['torch']:.3f} ms | {diff:g} |")


if __name__ == "__main__":
    main()
