"""Fixtures of the data tests: the committed datasets and a private frame cache per test."""
import os
import shutil
import sys

import numpy as np
import pytest

# --import-mode=importlib does not put test folders on sys.path; the shared paths live here.
sys.path.insert(0, os.path.dirname(__file__))
from data_fixtures import FIXTURES, V21, V30  # noqa: E402


@pytest.fixture(autouse=True)
def frame_cache(tmp_path, monkeypatch):
    """Decoded frames go to this test's own cache, never the user's."""
    d = tmp_path / "frame_cache"
    monkeypatch.setenv("OAT_EDGE_CACHE", str(d))
    return d


@pytest.fixture
def expected():
    """What lerobot's own reader returned for the v3.0 fixture when the fixture was made."""
    with np.load(os.path.join(FIXTURES, "lerobot_v30.npz")) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture
def v30_copy(tmp_path):
    """A writable copy of the v3.0 fixture, for tests that damage it."""
    d = tmp_path / "v30"
    shutil.copytree(V30, d)
    return d


@pytest.fixture
def v21_copy(tmp_path):
    d = tmp_path / "v21"
    shutil.copytree(V21, d)
    return d
