import numpy as np
import pytest
from oat_edge.control.action_queue import ActionQueue


def chunk(h=8, d=2):
    return np.arange(h, dtype=float)[:, None].repeat(d, axis=1)


def test_fresh_chunk_queues_first_n_action_steps():
    q = ActionQueue(8, 2, 4)
    assert q.load(chunk()) == 4
    assert [q.pop()[0] for _ in range(4)] == [0, 1, 2, 3]
    assert q.pop() is None


def test_late_chunk_skips_the_steps_already_elapsed():
    q = ActionQueue(8, 2, 4)
    assert q.load(chunk(), elapsed=3) == 1
    assert q.pop()[0] == 3


def test_very_late_chunk_still_yields_its_best_aligned_action():
    q = ActionQueue(8, 2, 4)
    assert q.load(chunk(), elapsed=6) == 1
    assert q.pop()[0] == 6


def test_stale_chunk_is_refused_and_old_queue_kept():
    q = ActionQueue(8, 2, 4)
    q.load(chunk() + 100)
    assert q.load(chunk(), elapsed=8) == 0
    assert len(q) == 4 and q.pop()[0] == 100


def test_new_chunk_replaces_remaining_old_actions():
    q = ActionQueue(8, 2, 4)
    q.load(chunk() + 100)
    q.pop()
    q.load(chunk(), elapsed=1)
    assert [q.pop()[0] for _ in range(len(q))] == [1, 2, 3]


def test_wrong_chunk_shape_is_an_error():
    q = ActionQueue(8, 2, 4)
    with pytest.raises(ValueError, match="shape"):
        q.load(np.zeros((8, 3)))


@pytest.mark.parametrize("args", [(0, 2, 1), (8, 0, 4), (8, 2, 0), (8, 2, 9)])
def test_bad_queue_geometry_is_an_error(args):
    with pytest.raises(ValueError):
        ActionQueue(*args)
