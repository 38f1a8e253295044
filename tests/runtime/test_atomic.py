"""oat_edge.atomic: outputs appear whole or not at all, and bad output paths fail early in one line."""
import errno
import json
import os

import pytest
from oat_edge import atomic
from oat_edge.atomic import OutputError


def _leftovers(d):
    return [n for n in os.listdir(d) if n.startswith(".")]


def test_write_json_replaces_the_file_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "r.json"
    atomic.write_json(p, {"a": 1})
    atomic.write_json(p, {"a": 2})
    assert json.loads(p.read_text()) == {"a": 2}
    assert _leftovers(tmp_path) == []
    assert oct(os.stat(p).st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode


def test_write_creates_missing_parent_directories(tmp_path):
    atomic.write_text(tmp_path / "a" / "b" / "c.md", "x")
    assert (tmp_path / "a" / "b" / "c.md").read_text() == "x"


def test_full_disk_gives_one_line_error_and_keeps_the_old_file(tmp_path, monkeypatch):
    p = tmp_path / "r.json"
    atomic.write_json(p, {"old": True})

    def full(path, data):
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])  # half written, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic, "_write_all", full)
    with pytest.raises(OutputError, match="no space left on device") as e:
        atomic.write_json(p, {"new": list(range(1000))})
    assert "\n" not in str(e.value) and str(p) in str(e.value)
    assert json.loads(p.read_text()) == {"old": True}
    assert _leftovers(tmp_path) == []


def test_interrupted_writer_leaves_no_file(tmp_path):
    p = tmp_path / "plot.png"
    with pytest.raises(KeyboardInterrupt):
        with atomic.atomic_path(p) as tmp:
            open(tmp, "wb").write(b"partial")
            raise KeyboardInterrupt
    assert not p.exists() and _leftovers(tmp_path) == []


def test_atomic_dir_swaps_whole_directories(tmp_path):
    d = tmp_path / "bundle"
    with atomic.atomic_dir(d) as s:
        open(os.path.join(s, "a"), "w").write("1")
    with atomic.atomic_dir(d) as s:
        open(os.path.join(s, "b"), "w").write("2")
    assert sorted(os.listdir(d)) == ["b"]
    assert _leftovers(tmp_path) == []


def test_atomic_dir_failure_leaves_the_old_directory_untouched(tmp_path):
    d = tmp_path / "bundle"
    d.mkdir()
    (d / "a").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic.atomic_dir(d) as s:
            open(os.path.join(s, "a"), "w").write("new")
            raise RuntimeError("export failed")
    assert (d / "a").read_text() == "old" and _leftovers(tmp_path) == []


def test_atomic_dir_without_rename_exchange_still_replaces(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    d = tmp_path / "bundle"
    d.mkdir()
    (d / "a").write_text("old")
    with atomic.atomic_dir(d) as s:
        open(os.path.join(s, "b"), "w").write("new")
    assert os.listdir(d) == ["b"] and _leftovers(tmp_path) == []


def test_check_output_file_rejects_a_directory_and_a_file_as_parent(tmp_path):
    with pytest.raises(OutputError, match="is a directory"):
        atomic.check_output_file(tmp_path, "--json")
    (tmp_path / "f").write_text("")
    with pytest.raises(OutputError, match="is a file, not a directory"):
        atomic.check_output_file(tmp_path / "f" / "x.json", "--json")
    assert atomic.check_output_file(tmp_path / "new" / "x.json") == str(tmp_path / "new" / "x.json")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_check_output_file_rejects_an_unwritable_directory(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="permission denied"):
            atomic.check_output_file(ro / "x.json")
    finally:
        ro.chmod(0o700)


def test_check_output_dir_refuses_existing_results_without_force(tmp_path):
    (tmp_path / "eval").mkdir()
    assert atomic.check_output_dir(tmp_path / "eval") == str(tmp_path / "eval")  # empty: fine
    (tmp_path / "eval" / "results.json").write_text("{}")
    with pytest.raises(OutputError, match="--force"):
        atomic.check_output_dir(tmp_path / "eval")
    atomic.check_output_dir(tmp_path / "eval", force=True)
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="is a file, expected a directory"):
        atomic.check_output_dir(tmp_path / "file", force=True)
