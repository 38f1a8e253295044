import numpy as np
import pytest
from control_fakes import FakeClock
from oat_edge.control import FixedRateScheduler, VirtualScheduler


def test_deadlines_are_absolute_so_1000_cycles_do_not_drift():
    # The OS oversleeps 0.3 ms every time; a relative scheduler would drift 0.3 s in 1000 cycles.
    fc = FakeClock(tick=1e-6, overshoot=3e-4)
    s = FixedRateScheduler(50, clock=fc.clock, sleep=fc.sleep, spin_s=5e-4)
    s.start()
    wakes = []
    for n in range(1000):
        idx, deadline, wake = s.wait()
        assert idx == n
        assert deadline == pytest.approx(s.t0 + n * 0.02, abs=1e-12)
        wakes.append(wake - deadline)
    lateness = np.array(wakes)
    assert lateness.min() >= 0.0
    assert lateness.max() < 1e-5          # spin phase absorbs the oversleep
    assert s.skipped == 0


def test_scheduler_sleeps_until_shortly_before_deadline_then_spins():
    fc = FakeClock(tick=1e-6)
    s = FixedRateScheduler(100, clock=fc.clock, sleep=fc.sleep, spin_s=5e-4)
    s.start()
    s.wait()  # deadline 0 is now: no sleep
    s.wait()
    assert len(fc.sleeps) == 1
    assert fc.sleeps[0] == pytest.approx(0.01 - 5e-4, abs=1e-5)


def test_late_cycle_skips_missed_deadlines_instead_of_bursting():
    fc = FakeClock(tick=1e-6)
    s = FixedRateScheduler(50, clock=fc.clock, sleep=fc.sleep)
    s.start()
    s.wait()
    fc.t += 0.065  # a 65 ms stall: deadlines 1 and 2 are gone, 3 is 5 ms late
    idx, deadline, wake = s.wait()
    assert s.skipped == 2
    assert idx == 3 and deadline == pytest.approx(s.t0 + 3 * 0.02)
    idx, deadline, _ = s.wait()
    assert idx == 4 and deadline == pytest.approx(s.t0 + 4 * 0.02)


def test_slightly_late_cycle_runs_immediately_without_skipping():
    fc = FakeClock(tick=1e-6)
    s = FixedRateScheduler(50, clock=fc.clock, sleep=fc.sleep)
    s.start()
    s.wait()
    fc.t += 0.025  # 5 ms past deadline 1
    idx, deadline, wake = s.wait()
    assert idx == 1 and s.skipped == 0
    assert wake - deadline == pytest.approx(0.005, abs=1e-4)


@pytest.mark.parametrize("hz", [0, -5, float("nan"), float("inf"), "50"])
def test_scheduler_rejects_bad_rate(hz):
    with pytest.raises(ValueError, match="hz"):
        FixedRateScheduler(hz)
    with pytest.raises(ValueError, match="hz"):
        VirtualScheduler(hz)


def test_virtual_scheduler_advances_exactly_one_period_per_cycle():
    s = VirtualScheduler(50)
    s.start()
    times = [s.wait()[2] for _ in range(5)]
    assert times == pytest.approx([0.0, 0.02, 0.04, 0.06, 0.08])
