import threading
import time

from oat_edge.control.job_thread import JobThread


def test_one_job_at_a_time_and_each_result_taken_once():
    gate = threading.Event()
    t = JobThread("oat-test-job", lambda x: (gate.wait(2.0), x * 2)[1])
    try:
        assert t.idle and t.submit(21)
        assert not t.submit(5)                    # refused while the first job runs
        assert not t.idle and t.take() is None
        gate.set()
        end = time.monotonic() + 2.0
        while (res := t.take()) is None and time.monotonic() < end:
            time.sleep(0.001)
        assert res == 42 and t.take() is None and t.idle
    finally:
        t.close(1.0)
    assert not t.submit(1)                        # a closed thread takes no more jobs
