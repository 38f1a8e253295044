"""FSQ levels stamped into the decoder and encoder graphs (oat_edge.fsq_levels)."""
import os
import shutil

import onnx
import pytest
from oat_export.stamp import FSQ_KEY, main, read_stamp, stamp_graph

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIPPED = os.path.join(ROOT, "models", "oat-metaworld-mt3")
STAMPED = ("decoder.onnx", "encoder.onnx")


def _unstamped_copy(src, dst):
    shutil.copytree(src, dst)
    for f in STAMPED:
        m = onnx.load(os.path.join(dst, f))
        keep = [p for p in m.metadata_props if p.key != FSQ_KEY]
        del m.metadata_props[:]
        m.metadata_props.extend(keep)
        onnx.save(m, os.path.join(dst, f))
    return dst


def _without_metadata(path):
    m = onnx.load(path)
    del m.metadata_props[:]
    return m.SerializeToString()


def test_exporter_stamps_the_decoder_and_encoder_of_a_state_bundle(tiny_bundle):
    for f in STAMPED:
        assert read_stamp(os.path.join(tiny_bundle, f)) == [8, 5, 5, 5]
    assert read_stamp(os.path.join(tiny_bundle, "policy_prefill.onnx")) is None  # levels do not matter there


def test_shipped_bundle_is_stamped_with_its_manifest_levels():
    from oat_export.stamp import read_manifest

    levels = read_manifest(SHIPPED)["tokenizer"]["fsq_levels"]
    for f in STAMPED:
        assert read_stamp(os.path.join(SHIPPED, f)) == levels


def test_stamp_tool_stamps_an_unstamped_bundle_and_changes_nothing_else(tmp_path, capsys):
    b = _unstamped_copy(SHIPPED, tmp_path / "b")
    before = {f: _without_metadata(str(b / f)) for f in STAMPED}
    assert main([str(b)]) == 0
    out = capsys.readouterr().out
    assert f"stamped {FSQ_KEY}=[8, 5, 5, 5] into decoder.onnx, encoder.onnx" in out and "round trip" in out
    for f in STAMPED:
        assert read_stamp(str(b / f)) == [8, 5, 5, 5]
        assert _without_metadata(str(b / f)) == before[f]
    assert main([str(b)]) == 0  # stamping again is a no-op, not an error


def test_stamp_tool_refuses_levels_the_graphs_do_not_behave_like(tmp_path, capsys, edit_manifest):
    b = _unstamped_copy(SHIPPED, tmp_path / "b")
    edit_manifest(str(b), lambda d: d["tokenizer"].update(fsq_levels=[5, 5, 8, 5]))  # same product, reordered
    assert main([str(b)]) == 2
    err = capsys.readouterr().err
    assert "tokenizer.fsq_levels=[5, 5, 8, 5]" in err and "gives back only" in err and "--force" in err
    for f in STAMPED:
        assert read_stamp(str(b / f)) is None


def test_stamp_tool_refuses_levels_whose_codebook_is_smaller_than_the_encoders_ids(tmp_path, capsys, edit_manifest):
    b = _unstamped_copy(SHIPPED, tmp_path / "b")

    def smaller(d):
        d["tokenizer"].update(fsq_levels=[7, 5, 5, 5], codebook_size=875)
        d["policy"].update(vocab_size=876, bos_id=875)
    edit_manifest(str(b), smaller)
    assert main([str(b)]) == 2
    err = capsys.readouterr().err
    assert "the encoder graph writes ids in" in err and "outside [0, 875)" in err
    assert read_stamp(str(b / "decoder.onnx")) is None


def test_stamp_tool_refuses_a_stamp_that_differs_from_the_manifest_unless_forced(tmp_path, capsys):
    b = shutil.copytree(SHIPPED, tmp_path / "b")
    stamp_graph(str(b / "decoder.onnx"), [5, 5, 5, 8])
    assert main([str(b)]) == 2
    err = capsys.readouterr().err
    assert "stamped oat_edge.fsq_levels=[5, 5, 5, 8]" in err and "tokenizer.fsq_levels=[8, 5, 5, 5]" in err
    assert read_stamp(str(b / "decoder.onnx")) == [5, 5, 5, 8]
    assert main([str(b), "--force"]) == 0
    assert read_stamp(str(b / "decoder.onnx")) == [8, 5, 5, 5]


def test_stamp_tool_names_a_directory_that_is_not_a_bundle(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "has no model.onnx" in capsys.readouterr().err


def test_a_stamp_that_differs_from_the_manifest_fails_the_load(tmp_path):
    """The loader compares the stamp with the manifest (here the Python validator `inspect` uses)."""
    from oat_edge import manifest as mf
    from oat_edge.errors import BundleError

    b = shutil.copytree(SHIPPED, tmp_path / "b")
    stamp_graph(str(b / "encoder.onnx"), [5, 5, 8, 5])
    with pytest.raises(BundleError, match=FSQ_KEY):
        mf.load_manifest(b)
