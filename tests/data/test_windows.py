"""Episode-aware windows: no observation history or action chunk crosses an episode."""
import numpy as np
import pytest
from oat_edge.data.windows import window_indices


def test_no_window_crosses_an_episode_boundary():
    ends = np.array([3, 4, 9])
    ep, o_rows, a_rows = window_indices(ends, horizon=5, n_obs_steps=3)
    starts = np.array([0, 3, 4])
    assert ep.tolist() == [0, 0, 0, 1, 2, 2, 2, 2, 2]
    for rows in (o_rows, a_rows):
        assert (rows >= starts[ep][:, None]).all() and (rows < ends[ep][:, None]).all()


def test_end_repeats_the_last_action_and_start_repeats_the_first_observation():
    ep, o_rows, a_rows = window_indices([3, 4, 9], horizon=5, n_obs_steps=3)
    assert a_rows[1].tolist() == [1, 2, 2, 2, 2]
    assert a_rows[3].tolist() == [3, 3, 3, 3, 3]  # a one-frame episode
    assert o_rows[4].tolist() == [4, 4, 4] and o_rows[6].tolist() == [4, 5, 6]


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="horizon/n_obs_steps: expected >= 1"):
        window_indices([3], horizon=0, n_obs_steps=1)
