import numpy as np
import pytest
import torch
import torch.nn as nn
from oat_edge.train.vision import ImageEncoder, ImagePreprocess, SpatialSoftmax, VisionConfig


def _frames(n=3, t=2, h=20, w=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, t, h, w, 3), dtype=torch.uint8, generator=g)


def test_resnet18_preset_has_exactly_resnet18s_backbone_weights():
    enc = ImageEncoder(VisionConfig.resnet18(), 64, 64)
    backbone = sum(p.numel() for m in (enc.stem, enc.blocks) for p in m.parameters())
    assert backbone == 11_176_512  # torchvision resnet18 without its fc layer
    assert enc.feature_map == (512, 2, 2)  # stride 32, as ResNet-18's 224 -> 7
    assert len(enc.blocks) == 8


def test_width_and_depth_are_the_only_difference_between_tiny_and_resnet18():
    tiny = ImageEncoder(VisionConfig(), 56, 56)
    assert tiny.feature_map == (64, 7, 7)
    deeper = ImageEncoder(VisionConfig(width=8, stage_blocks=(2, 2, 2, 2)), 56, 56)
    assert len(deeper.blocks) == 8 and deeper.feature_map == (64, 4, 4)
    assert sum(p.numel() for p in tiny.parameters()) < 200_000


def test_no_batch_statistics_a_frame_encodes_the_same_alone_or_in_a_batch():
    enc = ImageEncoder(VisionConfig(width=8), 24, 24)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in enc.modules())
    x = torch.randn(4, 3, 24, 24)
    for mode in (True, False):
        enc.train(mode)
        with torch.no_grad():
            torch.testing.assert_close(enc(x)[2:3], enc(x[2:3]), atol=1e-5, rtol=1e-5)


def test_pooling_choices_give_feature_dim_outputs():
    for pool in ("spatial_softmax", "avg"):
        enc = ImageEncoder(VisionConfig(width=8, pool=pool, feature_dim=10), 24, 24)
        assert enc(torch.randn(2, 3, 24, 24)).shape == (2, 10)


def test_spatial_softmax_returns_the_coordinates_of_a_hot_spot():
    ss = SpatialSoftmax(1, 5, 9, num_keypoints=1)
    with torch.no_grad():
        ss.keypoints.weight.fill_(1.0)
        ss.keypoints.bias.zero_()
    x = torch.zeros(1, 1, 5, 9)
    x[0, 0, 1, 6] = 100.0  # row 1 of 5, column 6 of 9
    xy = ss(x)[0]
    torch.testing.assert_close(xy, torch.tensor([-1 + 2 * 6 / 8, -1 + 2 * 1 / 4]), atol=1e-4, rtol=0)


def test_inference_crops_the_centre_and_scales_uint8_to_normalized_floats():
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    pre = ImagePreprocess(20, 24, (16, 18), mean, std).eval()
    frames = _frames()
    out = pre(frames)
    assert out.shape == (6, 3, 16, 18) and out.dtype == torch.float32
    centre = frames[:, :, 2:18, 3:21].reshape(6, 16, 18, 3).numpy().astype(np.float64) / 255.0
    want = ((centre - np.array(mean)) / np.array(std)).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(out.numpy(), want, atol=1e-5)


def test_training_crops_a_random_window_per_sample_shared_by_its_history():
    pre = ImagePreprocess(20, 24, (16, 18), (0.0,) * 3, (1.0,) * 3).train()
    frames = _frames(n=8, t=3)
    out = pre(frames, torch.Generator().manual_seed(1)).reshape(8, 3, 3, 16, 18)
    u8 = torch.round(out * 255).to(torch.uint8).permute(0, 1, 3, 4, 2)  # back to [n, t, h, w, 3]
    offsets = set()
    for i in range(8):
        hits = [(dy, dx) for dy in range(5) for dx in range(7)
                if torch.equal(u8[i], frames[i, :, dy:dy + 16, dx:dx + 18])]
        assert len(hits) == 1, "every sample is one window of its frames, the same for each step"
        offsets.add(hits[0])
    assert len(offsets) > 1, "samples get different offsets"
    again = pre(frames, torch.Generator().manual_seed(1))
    torch.testing.assert_close(again.reshape(out.shape), out)  # seeded: reproducible


def test_a_crop_as_large_as_the_frame_is_the_frame_in_training_too():
    pre = ImagePreprocess(8, 8, (8, 8), (0.0,) * 3, (1.0,) * 3).train()
    frames = _frames(h=8, w=8)
    torch.testing.assert_close(pre(frames), pre.eval()(frames))


@pytest.mark.parametrize("kwargs, match", [
    (dict(pool="max"), "pool"),
    (dict(width=0), "width"),
    (dict(stage_blocks=()), "stage_blocks"),
    (dict(stage_blocks=(2, 0)), "stage_blocks"),
    (dict(stem_pool=1), "stem_pool"),
    (dict(feature_dim=True), "feature_dim"),
])
def test_bad_config_fields_are_named_in_the_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VisionConfig(**kwargs)


def test_config_round_trips_through_a_dict_and_rejects_unknown_fields():
    cfg = VisionConfig.resnet18(feature_dim=32)
    assert VisionConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown fields.*depth"):
        VisionConfig.from_dict({"depth": 3})


def test_bad_crop_or_normalization_is_a_clear_error():
    with pytest.raises(ValueError, match="crop"):
        ImagePreprocess(20, 24, (21, 10), (0.5,) * 3, (0.5,) * 3)
    with pytest.raises(ValueError, match="std > 0"):
        ImagePreprocess(20, 24, (16, 16), (0.5,) * 3, (0.5, 0.0, 0.5))
