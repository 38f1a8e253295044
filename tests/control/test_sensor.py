import threading
import time

import numpy as np
import pytest
from oat_edge.control.error_log import ErrorLog
from oat_edge.control.sensor import InlineSensor, ObservationCheck, SensorThread


@pytest.mark.parametrize("value,why", [
    (np.full((2, 3), np.nan), "NaN"),
    (np.zeros((3, 2)), "shape (3, 2)"),
    ([[1, 2, 3], [4, 5]], "expected a finite numeric array"),
    (None, "dtype object"),
    ("abc", "dtype <U3"),
])
def test_garbage_readings_are_rejected_with_what_was_expected(value, why):
    with pytest.raises(ValueError, match="expected a finite numeric array of shape \\(2, 3\\)") as e:
        ObservationCheck((2, 3))(value)
    assert why in str(e.value)


def test_a_good_reading_is_copied_so_the_sensor_may_reuse_its_buffer():
    buf = np.ones((2, 3), dtype=np.float32)
    out = ObservationCheck((2, 3))(buf)
    buf[:] = 7
    assert out.dtype == np.float32 and np.all(out == 1)
    assert ObservationCheck(None)(np.arange(3)).dtype == np.float64


def test_inline_sensor_records_a_raising_read_and_returns_nothing():
    log = ErrorLog()
    s = InlineSensor(lambda: 1 / 0, ObservationCheck(None), log)
    obs, err = s.take(5, 0.0)
    assert obs is None and err.startswith("sensor: ZeroDivisionError")
    assert log.summary()["errors_by_source"] == {"sensor": 1}


def _take_when_read(s, cycle, now, timeout=2.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = s.take(cycle, now)
        if got != (None, None):
            return got
        time.sleep(0.001)
    raise AssertionError("the sensor thread never delivered a reading")


def test_sensor_thread_reading_is_taken_once_and_stamped_with_its_cycle():
    clock = {"t": 10.0}
    s = SensorThread(lambda: np.zeros((1, 1)), ObservationCheck((1, 1)), ErrorLog(),
                     lambda: clock["t"], max_age_s=0.05)
    try:
        s.after_send(7)
        obs, err = _take_when_read(s, 7, 10.01)
        assert err is None and obs.cycle == 7 and obs.t == 10.0
        assert s.take(7, 10.01) == (None, None)       # a reading is planned from once
    finally:
        s.close()


def test_sensor_thread_discards_a_reading_older_than_the_limit():
    s = SensorThread(lambda: np.zeros((1, 1)), ObservationCheck((1, 1)), ErrorLog(),
                     lambda: 10.0, max_age_s=0.05)
    try:
        s.after_send(3)
        obs, err = _take_when_read(s, 6, 10.06)
        assert obs is None and "60.0 ms old (limit 50.0 ms)" in err and s.stale == 1
    finally:
        s.close()


def test_a_stalled_read_ignores_new_requests_and_close_does_not_wait_for_it():
    release = threading.Event()
    calls = []

    def stalled():
        calls.append(1)
        release.wait()
        return np.zeros((1, 1))

    s = SensorThread(stalled, ObservationCheck((1, 1)), ErrorLog(), time.perf_counter, 0.05)
    s.after_send(0)
    end = time.monotonic() + 2.0
    while not calls and time.monotonic() < end:
        time.sleep(0.001)
    for c in range(1, 5):
        s.after_send(c)                     # ignored: the read for cycle 0 is still running
    assert s.take(4, time.perf_counter()) == (None, None)
    t = time.perf_counter()
    s.close(timeout=0.05)
    assert time.perf_counter() - t < 0.5
    release.set()
    s._jobs._thread.join(1.0)
    assert not s._jobs._thread.is_alive() and len(calls) == 1
