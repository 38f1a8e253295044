"""Videos of evaluation episodes (`oat-edge eval --record N`).

Each frame is one control cycle: a display view of the scene (its own camera, larger than the
policy's, drawn every step while recording), the frames the policy last read as insets (camera
bundles), and a text panel: task, k, step, the executed action, the tokens and act() latency of
the chunk being executed, and whether the task has succeeded so far. The first frame is the
scene after reset, so an episode of n steps gives n + 1 frames.

Written as MP4 (H.264, yuv420p, PyAV) or, where PyAV is missing, as GIF (Pillow), atomically:
a file in the record directory is always a whole video, also after Ctrl-C or a crash.
"""

from __future__ import annotations

import contextlib
import os
from fractions import Fraction

import numpy as np

from ..atomic import atomic_path, check_output_dir

VIEW_SIZE = 256        # display view, pixels (square)
INSET_COLUMN = 128     # width of the insets column (camera bundles)
LINE_H, PANEL_PAD = 16, 6
BG, FG, GOOD = (24, 24, 28), (235, 235, 235), (110, 230, 120)


FORMATS = ("mp4", "gif")


def video_suffix(fmt: str | None = None) -> str:
    """The file suffix of videos in `fmt`; None: '.mp4' when PyAV with an H.264 encoder is
    importable, else '.gif'."""
    if fmt not in (None, *FORMATS):
        raise ValueError(f"record format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "gif":
        return ".gif"
    try:
        import av
        av.codec.Codec("libx264", "w")
    except Exception as exc:  # noqa: BLE001 - no PyAV, or a PyAV built without libx264
        if fmt == "mp4":
            raise ValueError(f"MP4 videos need PyAV with an H.264 encoder ({type(exc).__name__}: "
                             f"{exc}): pip install av, or record GIFs") from None
        return ".gif"
    return ".mp4"


def check_record_dir(path, force: bool = False) -> str:
    """Before the run: `path` can hold the videos (same rules as eval's --out)."""
    return check_output_dir(path, force=force, flag="--record-dir")


class VideoWriter:
    """RGB frames (uint8 [H, W, 3], all one size, even H and W) to `path`, streamed; the file
    appears, whole, at close(); abort() (or an exception inside `with`) leaves nothing behind."""

    def __init__(self, path, fps: float):
        self.path, self.frames = os.fspath(path), 0
        self._fps = Fraction(fps).limit_denominator(1000)
        self._mp4 = self.path.endswith(".mp4")
        self._stack = contextlib.ExitStack()
        self._tmp = self._stack.enter_context(atomic_path(self.path))
        self._gif: list = []
        self._palette = None
        self._container = self._stream = None

    def add(self, frame: np.ndarray) -> None:
        frame = np.ascontiguousarray(frame, dtype=np.uint8)
        if not self._mp4:
            from PIL import Image
            # One palette for all frames (the first frame's, plus the highlight colour, which
            # appears later): Pillow then stores only the pixels that changed.
            if self._palette is None:
                swatch = np.broadcast_to(np.array(GOOD, np.uint8), (4, frame.shape[1], 3))
                self._palette = Image.fromarray(np.concatenate([frame, swatch])).quantize(
                    colors=256, dither=0)
            self._gif.append(Image.fromarray(frame).quantize(palette=self._palette, dither=0))
        else:
            import av
            if self._container is None:
                self._container = av.open(self._tmp, mode="w", format="mp4")
                self._stream = self._container.add_stream("libx264", rate=self._fps)
                self._stream.height, self._stream.width = frame.shape[:2]
                self._stream.pix_fmt = "yuv420p"
                self._stream.options = {"crf": "23", "preset": "veryfast"}
            for packet in self._stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                self._container.mux(packet)
        self.frames += 1

    def close(self) -> str:
        """Finish the file and put it in place; returns its path."""
        try:
            if self._container is not None:
                for packet in self._stream.encode():
                    self._container.mux(packet)
                self._container.close()
            elif self._gif:
                self._gif[0].save(self._tmp, format="GIF", save_all=True,
                                  append_images=self._gif[1:], loop=0,
                                  duration=max(20, round(1000 / float(self._fps))))
        except BaseException as exc:
            self._stack.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._stack.close()
        return self.path

    def abort(self) -> None:
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
        with contextlib.suppress(Exception):
            self._stack.__exit__(KeyboardInterrupt, KeyboardInterrupt(), None)

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if kind is None:
            self.close()
        else:
            self.abort()


def _font():
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=12)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _upscale(img: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize to size x size (a 64x64 frame stays crisp at 128x128)."""
    h, w = img.shape[:2]
    return img[(np.arange(size) * h // size)[:, None], (np.arange(size) * w // size)[None, :]]


def compose(view: np.ndarray, insets: dict, lines: list) -> np.ndarray:
    """One video frame: `view` top left, `insets` {label: frame} stacked in a column to its
    right, and `lines` [(text, highlighted)] in a panel below."""
    from PIL import Image, ImageDraw
    vh, vw = view.shape[:2]
    col = INSET_COLUMN if insets else 0
    panel = PANEL_PAD * 2 + LINE_H * len(lines)
    h, w = vh + panel, vw + col
    canvas = np.empty((h + h % 2, w + w % 2, 3), dtype=np.uint8)
    canvas[:] = BG
    canvas[:vh, :vw] = view
    side = min(col, vh // max(1, len(insets)))
    for i, frame in enumerate(insets.values()):
        canvas[i * side:(i + 1) * side, vw:vw + side] = _upscale(frame, side)
    img = Image.fromarray(canvas)
    draw, font = ImageDraw.Draw(img), _font()
    for i, label in enumerate(insets):
        x, y = vw + 2, i * side + 1
        draw.rectangle((x, y, x + draw.textlength(label, font=font) + 3, y + 13), fill=BG)
        draw.text((x + 2, y), label, fill=FG, font=font)
    for i, (text, good) in enumerate(lines):
        draw.text((PANEL_PAD, vh + PANEL_PAD + i * LINE_H), text, fill=GOOD if good else FG,
                  font=font)
    return np.asarray(img)


class EpisodeRecording:
    """Records one evaluation episode: start(env) after reset, cycle(env, rec) after each
    control cycle (the loop's record), action(a) for each action sent; close() or abort()."""

    def __init__(self, path, sim, fps: float, camera: str = "corner", title: str = ""):
        from ..sim.camera import CameraRenderer
        model, data = sim
        self.renderer = CameraRenderer(model, data, [camera], VIEW_SIZE, VIEW_SIZE)
        self.camera, self.title = camera, title
        try:
            self.writer = VideoWriter(path, fps)
        except BaseException:
            self.renderer.close()
            raise
        self._action = None
        self._chunk = None  # (tokens, latency ms) of the chunk being executed
        self._success_step = None

    def action(self, a) -> None:
        self._action = np.asarray(a, dtype=np.float64).copy()

    def start(self, env) -> None:
        self._frame(env)

    def cycle(self, env, rec: dict) -> None:
        if rec.get("inference_ms") is not None and rec.get("error") is None:
            self._chunk = (rec.get("tokens_used"), rec["inference_ms"])
        if env.success and self._success_step is None:
            self._success_step = env.steps
        self._frame(env)

    def _frame(self, env) -> None:
        view = self.renderer.render(self.camera)
        read = getattr(env, "last_read", None) or {}
        insets = {k.rsplit(".", 1)[-1]: v[-1] for k, v in read.items() if v.dtype == np.uint8}
        act = ("action  " + " ".join(f"{x:+.2f}" for x in self._action)
               if self._action is not None else "action  -")
        chunk = ("chunk   -" if self._chunk is None else
                 f"chunk   {self._chunk[0]} tokens   act() {self._chunk[1]:.1f} ms")
        done = (f"success at step {self._success_step}" if self._success_step is not None
                else "no success yet")
        lines = [(self.title, False), (f"step {env.steps}/{env.max_steps}   {done}",
                                       self._success_step is not None),
                 (act, False), (chunk, False)]
        self.writer.add(compose(view, insets, lines))

    def close(self) -> str:
        try:
            return self.writer.close()
        finally:
            self.renderer.close()

    def abort(self) -> None:
        try:
            self.writer.abort()
        finally:
            self.renderer.close()


def episode_recording(job: dict, sim, episode: int) -> EpisodeRecording | None:
    """The recording of episode number `episode` of an eval shard (`job`: task, k, hz and the
    record settings evaluate() checked), or None when that episode is not recorded."""
    if episode >= job["record"]:
        return None
    # --seed and the episode's index: the same two flags record the same layout again
    name = f"{job['task']}_k{job['k']}_seed{job['seed']}_ep{episode:02d}{job['record_suffix']}"
    return EpisodeRecording(os.path.join(job["record_dir"], name), sim, job["hz"],
                            camera=job["record_camera"],
                            title=f"{job['task']}   k = {job['k']}   seed {job['seed']} episode {episode}")
