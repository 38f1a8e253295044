import numpy as np
import pytest
from oat_edge.control.safety import SafetyFilter


def test_out_of_bounds_action_is_clamped_and_counted():
    f = SafetyFilter([-1, -1], [1, 1])
    a, held = f.filter([2.0, -0.5])
    assert a.tolist() == [1.0, -0.5] and not held
    assert f.clamped_actions == 1


def test_nonfinite_action_holds_last_safe_action():
    f = SafetyFilter([-1, -1], [1, 1])
    f.filter([0.25, 0.5])
    a, held = f.filter([np.nan, 0.0])
    assert held and a.tolist() == [0.25, 0.5]
    a, held = f.filter([np.inf, 0.0])
    assert held and a.tolist() == [0.25, 0.5]
    assert f.nonfinite_actions == 2


def test_hold_before_any_action_is_the_middle_of_the_range():
    f = SafetyFilter([-1, 0], [1, 2])
    a, held = f.filter(None)
    assert held and a.tolist() == [0.0, 1.0]


def test_chunk_with_nan_is_rejected_whole():
    f = SafetyFilter([-1], [1])
    assert f.chunk_ok(np.zeros((4, 1)))
    bad = np.zeros((4, 1))
    bad[2, 0] = np.nan
    assert not f.chunk_ok(bad)
    assert f.rejected_chunks == 1


@pytest.mark.parametrize("low,high", [([0, 0], [1]), ([1], [0]), ([np.nan], [1]), ([], [])])
def test_bad_bounds_are_an_error(low, high):
    with pytest.raises(ValueError):
        SafetyFilter(low, high)

