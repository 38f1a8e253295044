"""sd_notify over a real AF_UNIX datagram socket: READY once, watchdog pings at half the period,
abstract-namespace addresses, no-op outside systemd, and a vanished socket never raises."""

import os
import socket

from oat_edge.sd_notify import ServiceNotifier


def test_ready_once_then_watchdog_pings_at_half_the_period(notify_socket):
    now = [100.0]
    n = ServiceNotifier.from_env({"NOTIFY_SOCKET": notify_socket.path, "WATCHDOG_USEC": "200000"},
                                 clock=lambda: now[0])
    assert n.watchdog_s == 0.2
    n.cycle()
    for _ in range(3):
        now[0] += 0.03
        n.cycle()  # inside the first half period (0.1 s): no more pings
    assert notify_socket.received() == ["READY=1\nSTATUS=control loop running", "WATCHDOG=1"]
    now[0] += 0.02
    n.cycle()
    assert notify_socket.received() == ["WATCHDOG=1"]
    n.close()


def test_abstract_namespace_socket():
    name = f"oat-edge-test-{os.getpid()}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(b"\0" + name.encode())
    s.settimeout(2)
    try:
        assert ServiceNotifier(f"@{name}").send("STATUS=hello")
        assert s.recv(100) == b"STATUS=hello"
    finally:
        s.close()


def test_no_op_outside_systemd():
    n = ServiceNotifier.from_env({})
    assert not n.enabled and not n.send("READY=1")
    n.cycle()  # nothing to send, nothing raised


def test_watchdog_meant_for_another_process_is_ignored(notify_socket):
    n = ServiceNotifier.from_env({"NOTIFY_SOCKET": notify_socket.path, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert n.enabled and n.watchdog_s == 0.0


def test_a_vanished_socket_is_reported_not_raised(tmp_path):
    n = ServiceNotifier(str(tmp_path / "gone.sock"), watchdog_s=1.0)
    assert n.send("WATCHDOG=1") is False
    n.cycle()
