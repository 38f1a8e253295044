"""Every row of tests/data/argument_rules.json through the Python API.

The same table runs through the C++ API (cpp/tests/test_argument_rules.cpp): the rules live in one
place, the C++ core, and both front doors must give the same InputError for the same argument.
"""
import json
import math
import os

import numpy as np
import pytest
from oat_edge import InputError, Policy

_TABLE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "argument_rules.json")
with open(_TABLE) as _f:
    RULES = json.load(_f)


def _value(v):
    return float(v) if v in ("nan", "inf", "-inf") else v


def _rows(section):
    return [pytest.param(r, id=f"{section}-{i}-{json.dumps(r.get('args', r.get('shape')))}")
            for i, r in enumerate(RULES[section])]


def _array(row, default_dtype):
    shape = tuple(row["shape"])
    if "values" in row:
        a = np.asarray(row["values"], dtype=row.get("dtype", default_dtype)).reshape(shape)
    else:
        a = np.zeros(shape, dtype=row.get("dtype", default_dtype))
    if "set" in row:
        index, value = row["set"]
        a[tuple(index)] = _value(value)
    return a


def _expect(row, call):
    if "error" not in row:
        call()
        return
    with pytest.raises(InputError) as e:
        call()
    for part in row["error"]:
        assert part in str(e.value), f"{part!r} missing from: {e.value}"


@pytest.fixture(scope="module")
def policy(tiny_bundle):
    p = Policy(tiny_bundle)
    i = p.info
    assert (i.num_tokens, i.codebook_size, i.n_obs_steps, i.obs_dim, i.horizon, i.action_dim) == (4, 1000, 2, 5, 8, 3)
    return p


def test_table_covers_every_act_option():
    given = {k for r in RULES["options"] for k in r["args"]}
    assert given == {"max_tokens", "min_tokens", "temperature", "top_k", "seed", "latency_budget_ms"}


@pytest.mark.parametrize("row", _rows("options"))
def test_option_rule_holds_for_check_options_act_and_generate(policy, row):
    args = {k: _value(v) for k, v in row["args"].items()}
    obs = np.zeros((2, 5), np.float32)
    _expect(row, lambda: policy.check_options(**args))
    _expect(row, lambda: policy.act(obs, **args))
    _expect(row, lambda: policy.generate(obs, **args))


@pytest.mark.parametrize("row", _rows("obs"))
def test_obs_rule_holds_for_act_and_generate(policy, row):
    obs = _array(row, np.float32)
    _expect(row, lambda: policy.act(obs))
    _expect(row, lambda: policy.generate(obs))


@pytest.mark.parametrize("row", _rows("ids"))
def test_ids_rule_holds_for_detokenize(policy, row):
    _expect(row, lambda: policy.detokenize(_array(row, np.int64)))


@pytest.mark.parametrize("row", _rows("actions"))
def test_actions_rule_holds_for_tokenize(policy, row):
    _expect(row, lambda: policy.tokenize(_array(row, np.float32)))


@pytest.mark.parametrize("row", _rows("runtime"))
def test_constructor_rule_holds(tiny_bundle, row):
    _expect(row, lambda: Policy(tiny_bundle, **{"warmup": False, **row["args"]}))


def test_nan_strings_decode_to_floats():  # the table's one encoding convention
    assert math.isnan(_value("nan")) and _value("-inf") == -math.inf and _value("hot") == "hot"
