"""oat-edge eval --record: one video per recorded episode, one frame per control cycle plus the
scene after reset, written whole or not at all; a record directory that cannot be written stops
the run before it starts."""

import os

import numpy as np
import pytest

pytest.importorskip("metaworld")
pytest.importorskip("matplotlib")

from oat_edge import cli  # noqa: E402
from oat_edge.atomic import OutputError  # noqa: E402
from oat_edge.measure import record  # noqa: E402
from oat_edge.measure.evaluate import evaluate  # noqa: E402


class ReachExpert:
    """Fake state bundle: the scripted reach expert's action for the newest state, repeated."""
    calls = 0

    def __init__(self, bundle, threads=1):
        from metaworld.policies import ENV_POLICY_MAP
        self.expert = ENV_POLICY_MAP["reach-v3"]()
        self.info = {"horizon": 4, "action_dim": 4, "n_obs_steps": 2, "obs_dim": 40,
                     "n_action_steps": 4, "num_tokens": 8, "tasks": ["reach-v3"],
                     "codebook_size": 1000,
                     "manifest": {"normalization": {"action_low": [-1] * 4,
                                                    "action_high": [1] * 4}}}

    def act(self, obs, max_tokens=None, seed=None, return_stats=False, **kw):
        ReachExpert.calls += 1
        a = self.expert.get_action(np.asarray(obs[-1, :39], dtype=np.float64))
        chunk = np.repeat(a[None], 4, axis=0)
        return (chunk, {"tokens_used": max_tokens or 8}) if return_stats else chunk


def run(tmp_path, **kw):
    kw = dict(dict(episodes=1, ks=(8,), workers=1, out_dir=tmp_path / "out", expert=False,
                   policy_factory=ReachExpert, progress=False, plots=False, record=1), **kw)
    return evaluate("fake-bundle", **kw)


def test_a_recorded_episode_is_an_h264_video_with_one_frame_per_step_plus_the_reset(tmp_path):
    av = pytest.importorskip("av")
    res = run(tmp_path, episodes=2)
    cell = res["per_task"]["reach-v3"]["8"]
    assert cell["success_rate"] == 1.0
    (v,) = cell["videos"]  # record=1: the first episode only
    video = v["file"]
    assert video == str(tmp_path / "out" / "videos" / "reach-v3_k8_seed0_ep00.mp4")
    assert res["record_dir"] == str(tmp_path / "out" / "videos")
    with av.open(video) as f:
        s = f.streams.video[0]
        assert (s.codec_context.name, s.codec_context.pix_fmt) == ("h264", "yuv420p")
        frames = [fr.to_ndarray(format="rgb24") for fr in f.decode(s)]
    # episode 0's steps: a second run of that one episode alone
    steps = run(tmp_path, out_dir=tmp_path / "one", record=0)["per_task"]["reach-v3"]["8"]["mean_steps"]
    assert len(frames) == steps + 1 and v["steps"] == steps and v["success"] is True
    assert frames[0].shape == (256 + record.PANEL_PAD * 2 + 4 * record.LINE_H, 256, 3)
    assert frames[0][:256].std() > 10  # the scene, not a blank view
    assert not [p for p in (tmp_path / "out" / "videos").iterdir() if p.name.startswith(".")]


def test_without_pyav_the_video_is_a_gif_and_mp4_is_refused_saying_why(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "av", None)  # import av -> ImportError
    assert record.video_suffix() == ".gif"
    with pytest.raises(ValueError, match="pip install av"):
        record.video_suffix("mp4")


def test_a_gif_video_has_the_same_frames(tmp_path):
    from PIL import Image
    res = run(tmp_path, record_format="gif")
    cell = res["per_task"]["reach-v3"]["8"]
    video = cell["videos"][0]["file"]
    assert video.endswith("reach-v3_k8_seed0_ep00.gif")
    with Image.open(video) as img:
        assert img.n_frames == cell["mean_steps"] + 1
        assert img.size == (256, 256 + record.PANEL_PAD * 2 + 4 * record.LINE_H)


def under_a_file(p):
    (p / "file").write_text("")
    return p / "file" / "videos"


def holding_videos(p):
    (p / "videos").mkdir()
    (p / "videos" / "old.mp4").write_text("")
    return p / "videos"


@pytest.mark.parametrize("make,msg", [(under_a_file, "is a file"), (holding_videos, "--force")])
def test_a_record_dir_that_cannot_take_the_videos_fails_before_the_run(tmp_path, make, msg):
    ReachExpert.calls = 0
    with pytest.raises(OutputError, match=msg):
        run(tmp_path, record_dir=make(tmp_path))
    assert ReachExpert.calls == 0 and not (tmp_path / "out").exists()


def test_an_unknown_record_camera_fails_before_the_run(tmp_path):
    ReachExpert.calls = 0
    with pytest.raises(ValueError, match="not in this model"):
        run(tmp_path, record_camera="wrist")
    assert ReachExpert.calls == 0


def test_cli_records_and_says_where(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("oat_edge.Policy", ReachExpert)
    rc = cli.main(["eval", "fake-bundle", "--episodes", "1", "--ks", "8", "--workers", "1",
                   "--no-expert", "--out", str(tmp_path / "out"), "--record", "1",
                   "--record-dir", str(tmp_path / "clips")])
    assert rc == 0
    assert f"wrote 1 videos to {tmp_path / 'clips'}" in capsys.readouterr().out
    assert len(list((tmp_path / "clips").iterdir())) == 1


class InterruptedReach(ReachExpert):
    """Ctrl-C arrives during the act() call number `stop_at`."""
    stop_at = 10 ** 9

    def act(self, obs, **kw):
        if ReachExpert.calls + 1 == InterruptedReach.stop_at:
            raise KeyboardInterrupt
        return super().act(obs, **kw)


def test_ctrl_c_while_recording_keeps_the_finished_videos_and_no_partial_one(tmp_path):
    ReachExpert.calls, InterruptedReach.stop_at = 0, 10 ** 9
    run(tmp_path, out_dir=tmp_path / "probe", policy_factory=InterruptedReach, record=0)
    per_episode = ReachExpert.calls - 3  # minus the warm-up acts
    ReachExpert.calls, InterruptedReach.stop_at = 0, 3 + per_episode + 2  # inside episode 2
    res = run(tmp_path, episodes=3, policy_factory=InterruptedReach, record=3)
    cell = res["per_task"]["reach-v3"]["8"]
    assert res["interrupted"] is True and cell["episodes_done"] == 1
    assert [os.path.basename(v["file"]) for v in cell["videos"]] == ["reach-v3_k8_seed0_ep00" + record.video_suffix()]
    assert sorted(p.name for p in (tmp_path / "out" / "videos").iterdir()) == [
        "reach-v3_k8_seed0_ep00" + record.video_suffix()]  # no half-written ep01, no temporary file
