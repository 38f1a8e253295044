"""deploy/oat-edge.service asks for what the loop needs (real-time limits, restart, watchdog),
and `oat-edge run` under a systemd-like NOTIFY_SOCKET reports ready and pings the watchdog."""

import configparser
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNIT = os.path.join(ROOT, "deploy", "oat-edge.service")
BUNDLE = os.path.join(ROOT, "models", "oat-metaworld-mt3")


def unit():
    cp = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"))
    cp.optionxform = str  # systemd keys are case-sensitive
    cp.read(UNIT)
    return cp


def test_unit_grants_real_time_limits_restart_and_watchdog():
    svc = unit()["Service"]
    assert svc["LimitRTPRIO"] == "99" and svc["LimitMEMLOCK"] == "infinity"
    assert svc["Restart"] == "on-failure"
    assert svc["Type"] == "notify" and svc["NotifyAccess"] == "main" and svc["WatchdogSec"].endswith("s")
    assert "--rt-priority" in svc["ExecStart"] and "--rt-memory" in svc["ExecStart"]
    assert unit()["Install"]["WantedBy"] == "multi-user.target"


def test_run_sends_ready_and_watchdog_pings_from_the_loop(notify_socket, monkeypatch, capsys):
    pytest.importorskip("metaworld")
    from oat_edge import cli
    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.path)
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # a ping every 50 ms of cycling
    rc = cli.main(["run", BUNDLE, "--cycles", "40", "--hz", "200", "--quiet", "--no-telemetry"])
    got = notify_socket.received()
    assert rc == 0, capsys.readouterr().err
    assert got[0].startswith("READY=1") and got.count("WATCHDOG=1") >= 2
