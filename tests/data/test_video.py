"""Video encode/decode through PyAV: both codecs LeRobot datasets use, frame-accurate lookup."""
import numpy as np
import pytest
from data_fixtures import smooth_frames
from oat_edge.data import DatasetError
from oat_edge.data.video import decode_frames, encode_video, pick_encoder


@pytest.mark.parametrize("codec", ["libsvtav1", "h264"])
def test_encode_then_decode_every_frame_by_timestamp(tmp_path, codec):
    try:
        pick_encoder((codec,))
    except DatasetError:
        pytest.skip(f"this PyAV build has no {codec} encoder")
    src = smooth_frames(12, 32)
    info = encode_video(src, str(tmp_path / "v.mp4"), 20, codec=codec)
    assert info["video.codec"] in ("av1", "h264") and info["video.fps"] == 20
    got = decode_frames([(str(tmp_path / "v.mp4"), np.arange(12) / 20, None)], 20, (32, 32, 3))
    assert got.shape == src.shape
    err = np.abs(got.astype(np.int16) - src.astype(np.int16))
    assert err.mean() < 8
    # out of order and repeated timestamps answer with the right frames
    back = decode_frames([(str(tmp_path / "v.mp4"), np.array([0.5, 0.05, 0.5]), None)], 20,
                         cache=False)
    np.testing.assert_array_equal(back[0], got[10])
    np.testing.assert_array_equal(back[1], got[1])
    np.testing.assert_array_equal(back[2], got[10])


def test_declared_shape_is_checked(tmp_path):
    encode_video(smooth_frames(3, 32), str(tmp_path / "v.mp4"), 10)
    with pytest.raises(DatasetError, match=r"frames: expected shape \[64, 64, 3\] as declared"):
        decode_frames([(str(tmp_path / "v.mp4"), [0.0], None)], 10, (64, 64, 3))


def test_encoding_refuses_non_uint8_frames_and_leaves_no_file(tmp_path):
    with pytest.raises(DatasetError, match=r"expected uint8 \[N, H, W, 3\]"):
        encode_video(np.zeros((2, 8, 8, 3), np.float32), str(tmp_path / "v.mp4"), 10)
    assert list(tmp_path.iterdir()) == []


def test_a_corrupt_video_is_a_clear_error(tmp_path):
    p = tmp_path / "v.mp4"
    p.write_bytes(b"\x00" * 1000)
    with pytest.raises(DatasetError, match=r"v.mp4 \(cam\): cannot open video"):
        decode_frames([(str(p), [0.0], None)], 10, what="cam")
