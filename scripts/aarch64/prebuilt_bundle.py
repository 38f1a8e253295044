"""pytest plugin for the aarch64 Python run: there is no torch (nor exporter) under emulation, so
`tiny_bundle` is the bundle the x86-64 side already exported ($OAT_EDGE_TEST_BUNDLE, the
Makefile's build/tiny_bundle); every other shared fixture is tests/conftest.py's own. Used with
`pytest --noconftest -p prebuilt_bundle` (scripts/aarch64/python.sh)."""

import os

import pytest
from conftest import *  # noqa: F401,F403  tests/conftest.py's fixtures, imported as a plain module


@pytest.fixture(scope="session")
def tiny_bundle():  # noqa: F811  replaces conftest's, which exports with torch
    path = os.environ.get("OAT_EDGE_TEST_BUNDLE", "")
    if not os.path.isfile(os.path.join(path, "model.onnx")):
        pytest.fail(f"OAT_EDGE_TEST_BUNDLE={path!r} is not a bundle: export it on the build machine first")
    return path
