"""ort_probe asks the library itself: its answers match the onnxruntime wheel's, and a file that
is not ONNX Runtime (or is too old) is an error or a missing API level, never a crash."""

import glob
import os
import subprocess

import pytest
from oat_edge import ort_probe
from oat_edge.ort_library import wheel_library

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLOW_START_S = 600  # a child interpreter under emulation on a loaded machine can take minutes


@pytest.fixture(scope="module")
def wheel_lib():
    lib = wheel_library()
    if not lib:
        pytest.skip("no onnxruntime wheel installed")
    return lib


def test_version_api_and_providers_match_the_wheel(wheel_lib):
    ort = pytest.importorskip("onnxruntime")
    info = ort_probe.probe_in_child(wheel_lib, timeout=SLOW_START_S)
    assert info["path"] == os.path.realpath(wheel_lib)
    assert info["version"] == ort.__version__
    assert info["api"] == int(ort.__version__.split(".")[1])
    assert info["providers"] == ort.get_available_providers()
    assert "CPUExecutionProvider" in info["providers"]


def test_a_text_file_is_an_error_naming_the_reason(tmp_path):
    bad = tmp_path / "libonnxruntime.so"
    bad.write_text("not a library")
    with pytest.raises(OSError, match="invalid ELF header|file too short"):
        ort_probe.probe_in_child(str(bad), timeout=SLOW_START_S)


def test_a_library_without_the_ort_entry_point_is_rejected():
    libm = next(iter(glob.glob("/lib/*/libm.so.6") + glob.glob("/usr/lib/*/libm.so.6")), None)
    if libm is None:
        pytest.skip("no libm.so.6 found")
    with pytest.raises(OSError, match="not ONNX Runtime"):
        ort_probe.probe_in_child(libm, timeout=SLOW_START_S)


def test_an_old_library_has_no_api_level(tmp_path):
    """The C++ tests' fake ORT 1.10 (GetApi(21) returns NULL), compiled here by $CC (a cross
    compiler when this runs under emulation)."""
    src = os.path.join(ROOT, "cpp", "tests", "fake_old_ort.c")
    out = tmp_path / "libfake_old_ort.so"
    try:
        subprocess.run([os.environ.get("CC", "cc"), "-shared", "-fPIC", "-o", str(out), src], check=True,
                       capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot compile {src}: {exc}")
    info = ort_probe.probe_in_child(str(out), timeout=SLOW_START_S)
    assert info["version"] == "1.10.0" and info["api"] is None and info["providers"] == []
