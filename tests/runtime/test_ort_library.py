"""oat_edge.ort_library: which libonnxruntime the C++ core is told to dlopen."""
import importlib.util
import os
import subprocess
import sys

import pytest
from oat_edge import ort_library
from oat_edge.errors import RuntimeLoadError
from oat_edge.ort_library import ENV_VAR, find_ort_library


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


def test_explicit_path_wins_over_env_var(tmp_path, monkeypatch):
    explicit = _touch(tmp_path / "a" / "libonnxruntime.so.1.20.0")
    monkeypatch.setenv(ENV_VAR, str(_touch(tmp_path / "b" / "libonnxruntime.so.1.99.0")))
    assert find_ort_library(explicit) == str(explicit)


def test_env_var_used_when_no_explicit_path(tmp_path, monkeypatch):
    lib = _touch(tmp_path / "libonnxruntime.so.1.31.1")
    monkeypatch.setenv(ENV_VAR, str(lib))
    assert find_ort_library() == str(lib)


def test_directory_resolves_to_newest_versioned_library(tmp_path, no_env):
    for name in ("libonnxruntime.so", "libonnxruntime.so.1", "libonnxruntime.so.1.9.0", "libonnxruntime.so.1.31.1"):
        _touch(tmp_path / name)
    assert find_ort_library(tmp_path) == str(tmp_path / "libonnxruntime.so.1.31.1")


def test_missing_explicit_path_raises_runtime_load_error_naming_it(tmp_path, no_env):
    missing = tmp_path / "nope" / "libonnxruntime.so.1"
    with pytest.raises(RuntimeLoadError, match="does not exist") as e:
        find_ort_library(missing)
    assert str(missing) in str(e.value) and "ort_library" in str(e.value)


def test_missing_env_var_path_raises_naming_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "gone.so"))
    with pytest.raises(RuntimeLoadError, match=ENV_VAR):
        find_ort_library()


def test_directory_without_library_raises(tmp_path, no_env):
    with pytest.raises(RuntimeLoadError, match="holds no libonnxruntime"):
        find_ort_library(tmp_path)


def test_nothing_found_returns_empty_so_cpp_searches_the_system(monkeypatch, no_env):
    monkeypatch.setattr(ort_library.importlib.util, "find_spec", lambda name: None)
    assert find_ort_library() == ""


def test_wheel_library_found_inside_fake_onnxruntime_package(tmp_path, monkeypatch, no_env):
    pkg = tmp_path / "onnxruntime"
    _touch(pkg / "__init__.py")
    lib = _touch(pkg / "capi" / "libonnxruntime.so.1.31.1")
    spec = importlib.util.spec_from_file_location("onnxruntime", pkg / "__init__.py",
                                                  submodule_search_locations=[str(pkg)])
    monkeypatch.setattr(ort_library.importlib.util, "find_spec", lambda name: spec)
    assert find_ort_library() == str(lib)


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="no onnxruntime wheel installed")
def test_installed_wheel_is_found_without_importing_onnxruntime(child_env):
    # In a fresh interpreter: a test elsewhere may already have imported onnxruntime here.
    code = ("import sys; from oat_edge.ort_library import find_ort_library; p = find_ort_library(); "
            "print(p); sys.exit(1 if 'onnxruntime' in sys.modules else 0)")
    env = {k: v for k, v in child_env.items() if k != ENV_VAR}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, f"onnxruntime was imported, or the call failed: {r.stderr}"
    path = r.stdout.strip()
    assert os.path.basename(path).startswith("libonnxruntime.so") and os.path.isfile(path)
    assert os.path.join("onnxruntime", "capi") in path
