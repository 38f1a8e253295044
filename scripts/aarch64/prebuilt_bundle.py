"""pytest plugin for the aarch64 Python run: there is no torch (nor exporter) under emulation, so
`tiny_bundle` is the bundle the x86-64 side already exported ($OAT_EDGE_TEST_BUNDLE, the
Makefile's build/tiny_bundle); the other shared fixtures are tests/conftest.py's own. Used with
`pytest --noconftest -p prebuilt_bundle` (scripts/aarch64/python.sh)."""

import os

import conftest  # tests/conftest.py as a plain module: its fixtures, not its torch export
import pytest

child_env = conftest.child_env
tiny_config = conftest.tiny_config


@pytest.fixture(scope="session")
def tiny_bundle():
    path = os.environ.get("OAT_EDGE_TEST_BUNDLE", "")
    if not os.path.isfile(os.path.join(path, "model.onnx")):
        pytest.fail(f"OAT_EDGE_TEST_BUNDLE={path!r} is not a bundle: export it on the build machine first")
    return path
