"""Convolutional image encoder in the Diffusion Policy / robomimic style: a ResNet with GroupNorm
(batch statistics would differ between training batches and a robot's single frame), pooled by a
spatial softmax into keypoint coordinates or by global averaging, projected to a feature vector.

`ImagePreprocess` takes camera buffers as they arrive (uint8 [N, H, W, 3], channels last) and does
the crop, the uint8 -> float scaling and the per-channel normalization itself, so an exported graph
takes raw frames. In training it crops at a random position (one offset per sample, shared by the
frames of its history, like a small camera shake); at inference it crops the centre.

`VisionConfig` sizes the backbone. The default is a small CPU network; `VisionConfig.resnet18()` is
the paper-size ResNet-18 (64 channels, [2, 2, 2, 2] blocks, 7x7 stride-2 stem and max-pool).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

POOLS = ("spatial_softmax", "avg")


@dataclass
class VisionConfig:
    width: int = 16                  # channels of the first stage; each later stage doubles them
    stage_blocks: tuple = (1, 1, 1)  # residual blocks per stage; stages after the first stride 2
    stem_kernel: int = 3
    stem_stride: int = 2
    stem_pool: bool = False          # 3x3 stride-2 max-pool after the stem
    group_size: int = 16             # channels per GroupNorm group (Diffusion Policy's choice)
    pool: str = "spatial_softmax"    # or "avg"
    num_keypoints: int = 32          # spatial softmax: keypoints, each an expected (x, y)
    feature_dim: int = 64            # output features per image

    def __post_init__(self):
        self.stage_blocks = tuple(self.stage_blocks)
        for name in ("width", "stem_kernel", "stem_stride", "group_size", "num_keypoints",
                     "feature_dim"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"VisionConfig.{name}: expected a positive int, got {v!r}")
        if not self.stage_blocks or not all(
                isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in self.stage_blocks):
            raise ValueError("VisionConfig.stage_blocks: expected a non-empty list of positive ints "
                             f"(blocks per stage), got {list(self.stage_blocks)!r}")
        if not isinstance(self.stem_pool, bool):
            raise ValueError(f"VisionConfig.stem_pool: expected a bool, got {self.stem_pool!r}")
        if self.pool not in POOLS:
            raise ValueError(f"VisionConfig.pool: expected one of {list(POOLS)}, got {self.pool!r}")

    @classmethod
    def resnet18(cls, **overrides) -> "VisionConfig":
        """ResNet-18's layout (torchvision's, with GroupNorm): the paper-size encoder."""
        return cls(**{**dict(width=64, stage_blocks=(2, 2, 2, 2), stem_kernel=7, stem_stride=2,
                             stem_pool=True), **overrides})

    @property
    def channels(self) -> list[int]:
        return [self.width * 2**i for i in range(len(self.stage_blocks))]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["stage_blocks"] = list(self.stage_blocks)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "VisionConfig":
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"VisionConfig: unknown fields {unknown}; expected some of "
                             f"{sorted(cls.__dataclass_fields__)}")
        return cls(**d)


def group_norm(channels: int, group_size: int) -> nn.GroupNorm:
    groups = max(1, channels // group_size)
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(groups, channels)


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convolutions) with GroupNorm."""

    def __init__(self, c_in: int, c_out: int, stride: int, group_size: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.norm1 = group_norm(c_out, group_size)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.norm2 = group_norm(c_out, group_size)
        self.down = None
        if stride != 1 or c_in != c_out:
            self.down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                      group_norm(c_out, group_size))

    def forward(self, x):
        y = F.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


class SpatialSoftmax(nn.Module):
    """Per keypoint channel, a softmax over the feature map's positions, returned as its expected
    (x, y) in [-1, 1]: [N, C, h, w] -> [N, 2 * num_keypoints]."""

    def __init__(self, channels: int, height: int, width: int, num_keypoints: int):
        super().__init__()
        self.keypoints = nn.Conv2d(channels, num_keypoints, 1)
        self.num_keypoints, self.positions = num_keypoints, height * width
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width),
                                indexing="ij")
        self.register_buffer("grid", torch.stack([xs.reshape(-1), ys.reshape(-1)], 1),
                             persistent=False)  # [h*w, 2]

    def forward(self, x):
        att = F.softmax(self.keypoints(x).reshape(-1, self.num_keypoints, self.positions), dim=-1)
        return (att @ self.grid).reshape(-1, 2 * self.num_keypoints)


class GlobalAvgPool(nn.Module):
    def forward(self, x):  # [N, C, h, w] -> [N, C]
        return x.mean((2, 3))


class ImagePreprocess(nn.Module):
    """uint8 [N, T, H, W, 3] -> float [N*T, 3, crop_h, crop_w], cropped and normalized."""

    def __init__(self, height: int, width: int, crop: tuple, mean, std):
        super().__init__()
        self.height, self.width = int(height), int(width)
        self.crop = (int(crop[0]), int(crop[1]))
        if not (1 <= self.crop[0] <= self.height and 1 <= self.crop[1] <= self.width):
            raise ValueError(f"crop: expected 1..[{self.height}, {self.width}] (the frame size), "
                             f"got {list(self.crop)}")
        mean = torch.as_tensor(mean, dtype=torch.float32)
        std = torch.as_tensor(std, dtype=torch.float32)
        if mean.shape != (3,) or std.shape != (3,) or not bool((std > 0).all()):
            raise ValueError(f"mean/std: expected 3 values each, std > 0, got {mean.tolist()} / "
                             f"{std.tolist()}")
        # (u8 / 255 - mean) / std folded into one multiply-add
        self.register_buffer("gain", 1.0 / (255.0 * std))
        self.register_buffer("bias", -mean / std)
        rows, cols = torch.arange(self.crop[0]), torch.arange(self.crop[1])
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)

    def forward(self, frames: torch.Tensor, generator: torch.Generator | None = None):
        n, t = frames.shape[0], frames.shape[1]
        ch, cw = self.crop
        if self.training and (ch, cw) != (self.height, self.width):
            # One random offset per sample, shared by its history frames.
            dy = torch.randint(0, self.height - ch + 1, (n,), generator=generator)
            dx = torch.randint(0, self.width - cw + 1, (n,), generator=generator)
            dy, dx = dy.to(frames.device), dx.to(frames.device)
            r = (dy[:, None] + self.rows)[:, None, :, None]   # [n, 1, ch, 1]
            c = (dx[:, None] + self.cols)[:, None, None, :]   # [n, 1, 1, cw]
            s = torch.arange(t, device=frames.device)[None, :, None, None]
            b = torch.arange(n, device=frames.device)[:, None, None, None]
            x = frames[b, s, r, c]                              # [n, t, ch, cw, 3]
        else:
            y0, x0 = (self.height - ch) // 2, (self.width - cw) // 2
            x = frames[:, :, y0:y0 + ch, x0:x0 + cw]
        # channels-first before scaling: ONNX Runtime broadcasts [1, 3, 1, 1] over whole planes,
        # 7x faster than a 3-vector over the innermost axis (scripts/preprocess_layout.py); same values
        x = x.reshape(n * t, ch, cw, 3).permute(0, 3, 1, 2).to(torch.float32)
        return x * self.gain.view(1, 3, 1, 1) + self.bias.view(1, 3, 1, 1)


class ImageEncoder(nn.Module):
    """float [N, 3, h, w] (preprocessed) -> features [N, feature_dim]."""

    def __init__(self, cfg: VisionConfig, height: int, width: int):
        super().__init__()
        self.cfg = cfg
        c0 = cfg.channels[0]
        stem = [nn.Conv2d(3, c0, cfg.stem_kernel, cfg.stem_stride, cfg.stem_kernel // 2, bias=False),
                group_norm(c0, cfg.group_size), nn.ReLU()]
        if cfg.stem_pool:
            stem.append(nn.MaxPool2d(3, 2, 1))
        self.stem = nn.Sequential(*stem)
        blocks, c_in = [], c0
        for i, (c, n) in enumerate(zip(cfg.channels, cfg.stage_blocks)):
            for j in range(n):
                blocks.append(BasicBlock(c_in, c, 2 if (i > 0 and j == 0) else 1, cfg.group_size))
                c_in = c
        self.blocks = nn.Sequential(*blocks)
        with torch.no_grad():  # the feature map size follows from the crop size
            _, c, h, w = self.blocks(self.stem(torch.zeros(1, 3, height, width))).shape
        if cfg.pool == "spatial_softmax":
            self.pool = SpatialSoftmax(c, h, w, cfg.num_keypoints)
            pooled = 2 * cfg.num_keypoints
        else:
            self.pool = GlobalAvgPool()
            pooled = c
        self.proj = nn.Linear(pooled, cfg.feature_dim)
        self.feature_map = (c, h, w)

    def forward(self, x):
        return self.proj(self.pool(self.blocks(self.stem(x))))
