from oat_edge.control.error_log import ErrorLog


def test_call_turns_an_exception_into_a_counted_message():
    log = ErrorLog()
    out, err = log.call("policy", lambda: 1 / 0)
    assert out is None and err.startswith("policy: ZeroDivisionError")
    assert log.errors == 1 and log.messages == [err]
    assert log.call("policy", lambda x: x + 1, 1) == (2, None)


def test_repeated_messages_are_counted_once_each_and_sources_apart():
    log = ErrorLog(keep=2)
    for _ in range(3):
        log.record("sensor", "stalled")
    log.record("policy", "boom")
    log.record("policy", "another")   # a third distinct message: counted, not listed
    s = log.summary()
    assert s["errors"] == 5
    assert s["errors_by_source"] == {"sensor": 3, "policy": 2}
    assert s["error_counts"] == {"sensor: stalled": 3, "policy: boom": 1}
    assert s["error_messages"] == ["sensor: stalled", "policy: boom"]
    assert s["errors_unlisted"] == 1
