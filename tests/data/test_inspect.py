"""`oat-edge inspect-dataset`: what a user sees before training."""
import json

from data_fixtures import CAMERA, ROBOMIMIC, V30
from oat_edge.cli import main


def test_prints_episodes_frames_features_fps_tasks_and_stats(capsys):
    assert main(["inspect-dataset", V30]) == 0
    out = capsys.readouterr().out
    assert "lerobot v3.0   fps 10" in out
    assert "episodes    3   frames 27   length min/mean/max 7/9.0/11" in out
    assert f"{CAMERA:40s} video" in out and "camera" in out
    assert "2 episodes  pick up the cube" in out and "1 episodes  open the drawer" in out
    assert "stats (declared)" in out and "observation.state" in out


def test_json_with_decoded_video(capsys):
    assert main(["inspect-dataset", V30, "--json", "--check-video"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["features"][CAMERA]["decoded"] == [27, 32, 32, 3]
    assert s["tasks"] == {"pick up the cube": 2, "open the drawer": 1}


def test_robomimic_with_a_filter_key_and_computed_stats(capsys):
    assert main(["inspect-dataset", ROBOMIMIC, "--filter-key", "valid"]) == 0
    out = capsys.readouterr().out
    assert "robomimic hdf5" in out and "episodes    1   frames 6" in out
    assert "stats (computed)" in out


def test_bad_dataset_is_one_line_error(capsys, tmp_path):
    assert main(["inspect-dataset", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("oat-edge: error: ") and "meta/info.json: file missing" in err
