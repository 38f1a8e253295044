"""Fixtures of the reliability suite.

`bundle` is the tiny random-weight bundle of tests/conftest.py (fast), or the trained bundle named by
OAT_EDGE_TEST_BUNDLE, so the same property tests can be pointed at a real model:

    OAT_EDGE_TEST_BUNDLE=runs/<run>/bundle .venv/bin/python -m pytest -q tests/reliability
"""
import os

import pytest

ENV_BUNDLE = "OAT_EDGE_TEST_BUNDLE"


@pytest.fixture(scope="session")
def bundle(request):
    path = os.environ.get(ENV_BUNDLE)
    if path:
        if not os.path.exists(path):
            pytest.fail(f"{ENV_BUNDLE}={path!r} does not exist")
        return path
    return request.getfixturevalue("tiny_bundle")


@pytest.fixture(scope="session")
def policy(bundle):
    from oat_edge import Policy

    return Policy(bundle)


@pytest.fixture(scope="session")
def bounds(policy):
    n = policy.info.normalization
    return n.action_low, n.action_high

