"""Named, typed observations (LeRobot feature keys) and the encoder that turns them into the
features the AR policy projects into its cross-attention memory.

`ObservationSpec` is plain data: what a policy reads, per input its name, dtype, per-step shape and
preprocessing, plus the history length. Its `to_dict()` is what a bundle manifest records:

    {"n_obs_steps": 2,
     "inputs": [{"name": "observation.state", "dtype": "float32", "shape": [7],
                 "normalize": {"scale": [...], "offset": [...]}},          # x * scale + offset
                {"name": "observation.images.corner", "dtype": "uint8", "shape": [64, 64, 3],
                 "crop": [56, 56],                                         # random in training,
                 "normalize": {"mean": [...], "std": [...]}}]}             # centre at inference

Images are channels last, as cameras and LeRobot datasets deliver them; mean/std apply to the
frame scaled to [0, 1]. A batch is a dict {name: [B, n_obs_steps, *shape]} (oldest step first).

`ObservationEncoder` does all preprocessing inside the module (raw uint8 frames and raw state in),
so the exported prefill graph takes camera buffers untouched. Per step it concatenates every
camera's image features and the normalized state: [B, T, n_cameras * feature_dim + state_dim],
which the policy's own input projection turns into one memory token per step (the memory length,
and so the step graph and the runtime's cache shapes, stay n_obs_steps).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from oat_edge.sim.camera import IMAGE_PREFIX, STATE_KEY, image_key
from oat_edge.train.vision import ImageEncoder, ImagePreprocess, VisionConfig

CAMERA_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
CROP_FRACTION = 7 / 8  # default crop side: 56 of 64 pixels


def _err(where: str, msg: str) -> ValueError:
    return ValueError(f"observation spec: {where}: {msg}")


def _pos_int(where, v):
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise _err(where, f"expected a positive int, got {v!r}")
    return v


def _floats(where, v, n, positive=False, nonzero=False):
    if not isinstance(v, (list, tuple)) or len(v) != n:
        raise _err(where, f"expected a list of {n} numbers, got {v!r}")
    out = []
    for x in v:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
            raise _err(where, f"expected finite numbers, got {x!r}")
        if (positive and x <= 0) or (nonzero and x == 0):
            raise _err(where, f"expected {'positive' if positive else 'non-zero'} numbers, got {x!r}")
        out.append(float(x))
    return tuple(out)


def _keys(where, d, required, optional=()):
    if not isinstance(d, Mapping):
        raise _err(where, f"expected a dict, got {type(d).__name__}")
    missing = [k for k in required if k not in d]
    unknown = sorted(set(d) - set(required) - set(optional))
    if missing or unknown:
        raise _err(where, f"expected keys {list(required)}"
                   + (f" (optional {list(optional)})" if optional else "")
                   + (f"; missing {missing}" if missing else "")
                   + (f"; unknown {unknown}" if unknown else ""))


@dataclass
class StateInput:
    """observation.state: float32 [dim], normalized inside the encoder by x * scale + offset."""
    dim: int
    scale: tuple | None = None   # None: identity (ones)
    offset: tuple | None = None  # None: zeros

    def __post_init__(self):
        _pos_int(f"{self.name}.shape", self.dim)
        self.scale = _floats(f"{self.name}.normalize.scale",
                             [1.0] * self.dim if self.scale is None else list(self.scale),
                             self.dim, nonzero=True)
        self.offset = _floats(f"{self.name}.normalize.offset",
                              [0.0] * self.dim if self.offset is None else list(self.offset),
                              self.dim)

    @property
    def name(self) -> str:
        return STATE_KEY

    @property
    def shape(self) -> tuple:
        return (self.dim,)

    dtype = "float32"

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": [self.dim],
                "normalize": {"scale": list(self.scale), "offset": list(self.offset)}}


@dataclass
class CameraInput:
    """observation.images.<camera>: uint8 [height, width, 3], cropped to `crop` (random position
    in training, centre at inference), scaled to [0, 1], then (x - mean) / std per channel."""
    camera: str
    height: int
    width: int
    crop: tuple | None = None  # (h, w); None: CROP_FRACTION of the frame
    mean: tuple = (0.5, 0.5, 0.5)
    std: tuple = (0.5, 0.5, 0.5)

    def __post_init__(self):
        if not isinstance(self.camera, str) or not CAMERA_NAME.match(self.camera):
            raise _err(f"camera {self.camera!r}", "expected a name of letters, digits, '_' or '-' "
                       f"(the input is called {IMAGE_PREFIX}<camera>)")
        _pos_int(f"{self.name}.shape", self.height)
        _pos_int(f"{self.name}.shape", self.width)
        if self.crop is None:
            self.crop = (max(1, round(self.height * CROP_FRACTION)),
                         max(1, round(self.width * CROP_FRACTION)))
        if not isinstance(self.crop, (list, tuple)) or len(self.crop) != 2:
            raise _err(f"{self.name}.crop", f"expected [height, width], got {self.crop!r}")
        self.crop = (_pos_int(f"{self.name}.crop", self.crop[0]),
                     _pos_int(f"{self.name}.crop", self.crop[1]))
        if self.crop[0] > self.height or self.crop[1] > self.width:
            raise _err(f"{self.name}.crop", f"expected at most the frame size "
                       f"[{self.height}, {self.width}], got {list(self.crop)}")
        self.mean = _floats(f"{self.name}.normalize.mean", list(self.mean), 3)
        self.std = _floats(f"{self.name}.normalize.std", list(self.std), 3, positive=True)

    @property
    def name(self) -> str:
        return image_key(self.camera)

    @property
    def shape(self) -> tuple:
        return (self.height, self.width, 3)

    dtype = "uint8"

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape),
                "crop": list(self.crop), "normalize": {"mean": list(self.mean), "std": list(self.std)}}


@dataclass
class ObservationSpec:
    n_obs_steps: int
    state: StateInput
    cameras: tuple = ()

    def __post_init__(self):
        _pos_int("n_obs_steps", self.n_obs_steps)
        if not isinstance(self.state, StateInput):
            raise _err(STATE_KEY, f"expected a StateInput, got {type(self.state).__name__}")
        self.cameras = tuple(self.cameras)
        for c in self.cameras:
            if not isinstance(c, CameraInput):
                raise _err("cameras", f"expected CameraInput entries, got {type(c).__name__}")
        names = [c.camera for c in self.cameras]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise _err("cameras", f"expected distinct camera names, got {dup} more than once")

    @property
    def inputs(self) -> list:
        """State first, then the cameras in order: the order of the exported graph's inputs."""
        return [self.state, *self.cameras]

    @property
    def names(self) -> list[str]:
        return [i.name for i in self.inputs]

    def to_dict(self) -> dict:
        return {"n_obs_steps": self.n_obs_steps, "inputs": [i.to_dict() for i in self.inputs]}

    @classmethod
    def from_dict(cls, d) -> "ObservationSpec":
        _keys("spec", d, ("n_obs_steps", "inputs"))
        inputs = d["inputs"]
        if not isinstance(inputs, list) or not inputs:
            raise _err("inputs", f"expected a non-empty list, got {inputs!r}")
        state, cameras = None, []
        for i, item in enumerate(inputs):
            _keys(f"inputs[{i}]", item, ("name", "dtype", "shape", "normalize"), ("crop",))
            name, dtype, shape = item["name"], item["dtype"], item["shape"]
            if not isinstance(shape, list):
                raise _err(f"{name}.shape", f"expected a list of ints, got {shape!r}")
            if name == STATE_KEY:
                if state is not None:
                    raise _err(name, "expected once, given twice")
                if dtype != "float32" or len(shape) != 1 or "crop" in item:
                    raise _err(name, f"expected dtype float32, shape [state_dim] and no crop, got "
                               f"dtype {dtype!r}, shape {shape}" + (", a crop" if "crop" in item else ""))
                _keys(f"{name}.normalize", item["normalize"], ("scale", "offset"))
                state = StateInput(shape[0], item["normalize"]["scale"], item["normalize"]["offset"])
            elif isinstance(name, str) and name.startswith(IMAGE_PREFIX):
                if dtype != "uint8" or len(shape) != 3 or shape[2] != 3:
                    raise _err(name, f"expected dtype uint8 and shape [height, width, 3] (channels "
                               f"last), got dtype {dtype!r}, shape {shape}")
                if "crop" not in item:
                    raise _err(name, "expected a crop [height, width]")
                _keys(f"{name}.normalize", item["normalize"], ("mean", "std"))
                cameras.append(CameraInput(name[len(IMAGE_PREFIX):], shape[0], shape[1],
                                           item["crop"], item["normalize"]["mean"],
                                           item["normalize"]["std"]))
            else:
                raise _err(f"inputs[{i}].name", f"expected {STATE_KEY!r} or "
                           f"'{IMAGE_PREFIX}<camera>', got {name!r}")
        if state is None:
            raise _err("inputs", f"expected a {STATE_KEY!r} input, got only {[i['name'] for i in inputs]}")
        return cls(d["n_obs_steps"], state, tuple(cameras))

    def check_batch(self, obs) -> int:
        """A batch {name: [B, n_obs_steps, *shape]} (numpy or torch) -> B; ValueError naming the
        key on a missing or extra input, wrong dtype, shape or history length."""
        if not isinstance(obs, Mapping):
            raise ValueError(f"observation: expected a dict {{name: array}} with keys {self.names}, "
                             f"got {type(obs).__name__}")
        missing = [n for n in self.names if n not in obs]
        extra = sorted(set(obs) - set(self.names))
        if missing or extra:
            raise ValueError(f"observation: expected keys {self.names}"
                             + (f"; missing {missing}" if missing else "")
                             + (f"; unexpected {extra}" if extra else ""))
        batch = None
        for inp in self.inputs:
            x = obs[inp.name]
            dtype = str(getattr(x, "dtype", type(x).__name__)).removeprefix("torch.")
            shape = tuple(getattr(x, "shape", ()))
            want = (self.n_obs_steps, *inp.shape)
            if dtype != inp.dtype:
                raise ValueError(f"{inp.name}: expected dtype {inp.dtype}, got {dtype}"
                                 + (" (pass the camera's uint8 frames, not scaled floats)"
                                    if inp.dtype == "uint8" else ""))
            if len(shape) == len(want) + 1 and inp.dtype == "uint8" and shape[-3] == 3 and shape[-1] != 3:
                raise ValueError(f"{inp.name}: expected channels last [B, {self.n_obs_steps}, "
                                 f"{inp.height}, {inp.width}, 3], got channels first {list(shape)}")
            if len(shape) != len(want) + 1 or shape[1:] != want:
                raise ValueError(f"{inp.name}: expected shape [B, {', '.join(map(str, want))}] "
                                 f"(batch, n_obs_steps, {'state_dim' if inp is self.state else 'height, width, 3'}),"
                                 f" got {list(shape)}")
            if batch is not None and shape[0] != batch:
                raise ValueError(f"{inp.name}: expected batch {batch} like {self.names[0]}, got {shape[0]}")
            batch = shape[0]
        return batch


@dataclass
class ObservationEncoderConfig:
    vision: VisionConfig = field(default_factory=VisionConfig)
    shared_vision: bool = False  # one image encoder for every camera (they must share a crop size)

    def __post_init__(self):
        if isinstance(self.vision, Mapping):
            self.vision = VisionConfig.from_dict(dict(self.vision))
        if not isinstance(self.vision, VisionConfig):
            raise ValueError(f"ObservationEncoderConfig.vision: expected a VisionConfig, got "
                             f"{type(self.vision).__name__}")
        if not isinstance(self.shared_vision, bool):
            raise ValueError(f"ObservationEncoderConfig.shared_vision: expected a bool, got "
                             f"{self.shared_vision!r}")

    def to_dict(self) -> dict:
        return {"vision": self.vision.to_dict(), "shared_vision": self.shared_vision}


class ObservationEncoder(nn.Module):
    """{name: raw batch} -> features [B, n_obs_steps, feature_dim]: every camera's image features
    (spec order), then the normalized state."""

    def __init__(self, spec: ObservationSpec, cfg: ObservationEncoderConfig | None = None):
        super().__init__()
        cfg = cfg or ObservationEncoderConfig()
        self.spec, self.cfg = spec, cfg
        self.register_buffer("state_scale", torch.tensor(spec.state.scale), persistent=False)
        self.register_buffer("state_offset", torch.tensor(spec.state.offset), persistent=False)
        crops = {c.crop for c in spec.cameras}
        if cfg.shared_vision and len(crops) > 1:
            raise ValueError(f"shared_vision: every camera must have the same crop size to share "
                             f"one encoder, got {sorted(crops)}; set shared_vision=False or align the crops")
        self.preprocess = nn.ModuleDict({c.camera: ImagePreprocess(c.height, c.width, c.crop, c.mean, c.std)
                                         for c in spec.cameras})
        if cfg.shared_vision and spec.cameras:
            self.shared = ImageEncoder(cfg.vision, *spec.cameras[0].crop)
            self.image_encoders = None
        else:
            self.shared = None
            self.image_encoders = nn.ModuleDict({c.camera: ImageEncoder(cfg.vision, *c.crop)
                                                 for c in spec.cameras})
        self.feature_dim = len(spec.cameras) * cfg.vision.feature_dim + spec.state.dim

    def forward(self, obs: Mapping, generator: torch.Generator | None = None) -> torch.Tensor:
        self.spec.check_batch(obs)
        return self.encode(*(obs[n] for n in self.spec.names), generator=generator)

    def encode(self, state, *frames, generator=None):
        """Positional form (spec order: state, then cameras), the exported graph's signature."""
        B, T = state.shape[0], state.shape[1]
        images = [self.preprocess[c.camera](f, generator) for c, f in zip(self.spec.cameras, frames)]
        if self.shared is not None:  # one pass over all cameras
            feats = self.shared(torch.cat(images)).split(B * T)
        else:
            feats = [self.image_encoders[c.camera](x) for c, x in zip(self.spec.cameras, images)]
        feats = [f.reshape(B, T, -1) for f in feats]
        return torch.cat([*feats, state * self.state_scale + self.state_offset], dim=-1)

    def checkpoint(self) -> dict:
        return {"spec": self.spec.to_dict(), "config": self.cfg.to_dict(), "state": self.state_dict()}

    @classmethod
    def from_checkpoint(cls, ck) -> "ObservationEncoder":
        enc = cls(ObservationSpec.from_dict(ck["spec"]), ObservationEncoderConfig(**ck["config"]))
        enc.load_state_dict(ck["state"])
        return enc


class ObservationPrefill(nn.Module):
    """The prefill graph of a policy with named inputs: raw state and uint8 frames (spec order)
    -> the AR policy's cross-attention K/V (mem_k, mem_v) [L, B, H, n_obs_steps, Dh]."""

    def __init__(self, encoder: ObservationEncoder, policy):
        super().__init__()
        c = policy.cfg
        if c.obs_dim != encoder.feature_dim or c.n_obs_steps != encoder.spec.n_obs_steps:
            raise ValueError(f"policy.cfg: expected obs_dim={encoder.feature_dim}, n_obs_steps="
                             f"{encoder.spec.n_obs_steps} (from the observation encoder), got "
                             f"{c.obs_dim}, {c.n_obs_steps}")
        self.encoder, self.policy = encoder, policy

    def forward(self, state, *frames):
        return self.policy.prefill(self.encoder.encode(state, *frames))
