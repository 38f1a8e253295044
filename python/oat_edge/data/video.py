"""Video files through PyAV: encode frames (the writer) and decode them frame-accurately by
timestamp into a memory-mapped uint8 cache (the readers), so training never decodes twice.

The cache lives in $OAT_EDGE_CACHE (default ~/.cache/oat_edge/frames), keyed by the video file's
path, size and modification time and the requested timestamps; it is written under a temporary
name and renamed, so an interrupted decode never leaves a half-written cache behind.
"""

from __future__ import annotations

import hashlib
import os
import sys
from fractions import Fraction

import numpy as np

from oat_edge.data.errors import DatasetError

# LeRobot's own tolerance between a requested timestamp and the frame that answers it is 1e-4 s;
# containers round pts to their time base, so accept up to a third of a frame period.
TOLERANCE_FRAMES = 1.0 / 3.0


def _av():
    try:
        import av
    except ModuleNotFoundError:
        raise DatasetError("reading or writing videos needs PyAV: pip install av "
                           "(or pip install 'oat_edge[train]')") from None
    return av


def pick_encoder(preferred=("libsvtav1", "libx264", "h264", "mpeg4")) -> str:
    """The first encoder this PyAV build has (AV1 first, as LeRobot writes by default)."""
    av = _av()
    for name in preferred:
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # noqa: BLE001 - PyAV raises different types per version
            continue
    raise DatasetError(f"no video encoder available in PyAV; tried {list(preferred)}")


CODEC_NAME = {"libsvtav1": "av1", "libx264": "h264", "h264": "h264", "mpeg4": "mpeg4"}


def encode_video(frames, path, fps: float, codec: str | None = None) -> dict:
    """uint8 [N, H, W, 3] RGB frames -> an mp4 at `path` (atomic). Frame i has pts i / fps.
    Returns the `info` block LeRobot's info.json keeps for a video feature."""
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its banner per file otherwise
    av = _av()
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise DatasetError(f"{path}: frames: expected uint8 [N, H, W, 3] with N >= 1, given "
                           f"{frames.dtype} {list(frames.shape)}")
    codec = codec or pick_encoder()
    h, w = frames.shape[1:3]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}.mp4"
    rate = Fraction(fps).limit_denominator(1000)
    try:
        with av.open(tmp, "w") as out:
            # g=2 and yuv420p as LeRobot's encoder settings: cheap seeks, players accept it
            options = {"g": "2"}
            if codec == "libsvtav1":
                options.update(crf="30", preset="12")
            elif codec == "libx264":
                options.update(crf="18", preset="veryfast")
            s = out.add_stream(codec, rate=rate, options=options)
            s.width, s.height, s.pix_fmt = w, h, "yuv420p"
            s.time_base = Fraction(1, 1) / rate
            for i, img in enumerate(frames):
                f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                f.pts = i
                for pkt in s.encode(f):
                    out.mux(pkt)
            for pkt in s.encode():
                out.mux(pkt)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return {"video.height": int(h), "video.width": int(w),
            "video.codec": CODEC_NAME.get(codec, codec), "video.pix_fmt": "yuv420p",
            "video.is_depth_map": False,
            "video.fps": int(fps) if float(fps).is_integer() else float(fps), "video.channels": 3,
            "has_audio": False}


def _cache_dir() -> str:
    return os.environ.get("OAT_EDGE_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "oat_edge", "frames")


def _cache_key(segments, shape) -> str:
    h = hashlib.sha256(f"{shape}".encode())
    for path, timestamps, _ in segments:
        st = os.stat(path)
        h.update(f"|{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}|".encode())
        h.update(np.ascontiguousarray(timestamps, dtype=np.float64).tobytes())
    return h.hexdigest()[:24]


def decode_frames(segments, fps: float, shape=None, what: str = "", progress=None,
                  cache: bool = True) -> np.ndarray:
    """Camera frames for many rows as one read-only memory-mapped uint8 array [N, H, W, 3].

    segments: [(video path, timestamps in seconds from the file's start, (episode ids, frame
    numbers) of those rows or None)], concatenated in order. Each timestamp must match a decoded
    frame within a third of a frame period; a timestamp with no frame (past the end of a short
    video, or before its start) raises DatasetError naming the file, episode and frame. `shape`
    (H, W, 3), if given, is checked against the decoded frames. Each file is decoded once; the
    result is cached (see the module doc)."""
    segments = [(str(p), np.asarray(t, dtype=np.float64), eo) for p, t, eo in segments]
    for path, _, _ in segments:
        if not os.path.isfile(path):
            raise DatasetError(f"{path}: video file missing ({what or 'camera'}); expected it "
                               f"next to the dataset's parquet files - re-copy the dataset's "
                               f"videos/ folder")
    if cache:
        cpath = os.path.join(_cache_dir(), _cache_key(segments, shape) + ".npy")
        if os.path.isfile(cpath):
            return np.load(cpath, mmap_mode="r")
    parts = [_decode(p, t, fps, shape, what, progress, eo) for p, t, eo in segments]
    frames = np.concatenate(parts) if len(parts) > 1 else parts[0]
    if not cache:
        return frames
    os.makedirs(os.path.dirname(cpath), exist_ok=True)
    tmp = f"{cpath}.tmp{os.getpid()}.npy"
    try:
        mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=frames.shape)
        mm[:] = frames
        mm.flush()
        del mm
        os.replace(tmp, cpath)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return np.load(cpath, mmap_mode="r")


def _frame_missing(path, what, episode_of, i, reason):
    """The error for wanted frame i that no decoded frame answered."""
    at = (f"frame {i}" if episode_of is None
          else f"episode {episode_of[0][i]}, frame {episode_of[1][i]}")
    return DatasetError(f"{path} ({what}): {at}: {reason}; the video "
                        f"is shorter than the data or its timestamps do not match - "
                        f"re-encode the episode's video or fix meta/episodes")


def _frames_like(img, n, shape, path, what):
    """The output array for n frames like the first decoded one, whose shape must be the declared."""
    if shape is not None and tuple(img.shape) != tuple(shape):
        raise DatasetError(f"{path} ({what}): frames: expected shape {list(shape)} as declared in "
                           f"info.json, given {list(img.shape)}")
    return np.empty((n,) + img.shape, np.uint8)


def _decode(path, timestamps, fps, shape, what, progress, episode_of):
    av = _av()
    from tqdm import tqdm

    n = len(timestamps)
    order = np.argsort(timestamps, kind="stable")
    tol = TOLERANCE_FRAMES / float(fps)
    out = None
    j = 0  # next position in `order` to fill
    last_ts = None
    if progress is None:
        progress = sys.stderr.isatty()
    bar = tqdm(total=n, desc=f"decode {what or os.path.basename(path)}", unit="frame",
               disable=not progress, leave=False)

    def fail(i, reason):
        raise _frame_missing(path, what, episode_of, i, reason)

    try:
        container = av.open(path)
    except Exception as exc:  # noqa: BLE001
        raise DatasetError(f"{path} ({what}): cannot open video: {exc}") from None
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        tb = float(stream.time_base)
        for frame in container.decode(stream):
            ts = frame.pts * tb if frame.pts is not None else frame.time
            while j < n and timestamps[order[j]] < ts - tol:
                # wanted a time before this frame: no frame answered it
                fail(order[j], f"no frame at {timestamps[order[j]]:.4f} s (nearest "
                               f"{'start' if last_ts is None else f'{last_ts:.4f} s'})")
            while j < n and abs(timestamps[order[j]] - ts) <= tol:
                img = frame.to_ndarray(format="rgb24")
                if out is None:
                    out = _frames_like(img, n, shape, path, what)
                out[order[j]] = img
                j += 1
                bar.update(1)
            last_ts = ts
            if j == n:
                break
    except DatasetError:
        raise
    except Exception as exc:  # noqa: BLE001 - corrupt stream
        raise DatasetError(f"{path} ({what}): video is corrupt or truncated: {exc}") from None
    finally:
        container.close()
        bar.close()
    if j < n:
        i = order[j]
        fail(i, f"timestamp {timestamps[i]:.4f} s is past the video's last frame "
                f"({'none' if last_ts is None else f'{last_ts:.4f} s'})")
    return out
