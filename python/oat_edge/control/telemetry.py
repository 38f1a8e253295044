"""Board telemetry (GPU/CPU load, temperatures, power) from jetson-stats' `jtop`, when present.

On a Jetson with the jtop service running, a daemon thread samples `jtop().stats` and keeps the
latest values; the control loop attaches them to each cycle record. Anywhere else `latest()`
returns {}: the fields are absent, never faked.
"""

from __future__ import annotations

import threading
import time


def _default_jtop_factory():
    try:
        from jtop import jtop  # jetson-stats; only installed on Jetsons
    except Exception:  # noqa: BLE001 - any import failure means "no telemetry"
        return None
    return jtop


def _number(v):
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    return None


def parse_jtop_stats(stats: dict) -> dict:
    """Map a jtop `stats` dict to flat telemetry fields (only those present)."""
    out: dict[str, float] = {}
    cpus = [_number(v) for k, v in stats.items() if k.startswith("CPU") and k[3:].isdigit()]
    cpus = [c for c in cpus if c is not None]  # offline cores read "OFF"
    if cpus:
        out["cpu_load_pct"] = sum(cpus) / len(cpus)
    gpu = _number(stats.get("GPU"))
    if gpu is not None:
        out["gpu_load_pct"] = gpu
    for k, v in stats.items():
        n = _number(v)
        if n is None:
            continue
        if k.startswith("Temp "):
            out["temp_" + k[5:].strip().lower().replace(" ", "_") + "_c"] = n
        elif k == "Power TOT":
            out["power_total_mw"] = n
        elif k.startswith("Power "):
            out["power_" + k[6:].strip().lower().replace(" ", "_") + "_mw"] = n
    return out


class Telemetry:
    """Background sampler. `available` is False (and latest() is {}) when there is no jtop."""

    def __init__(self, jtop_factory=None, interval_s: float = 0.5):
        self._factory = jtop_factory if jtop_factory is not None else _default_jtop_factory()
        self._interval = interval_s
        self._latest: dict = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._jetson = None
        self.available = False
        self.error: str | None = None

    def start(self) -> "Telemetry":
        if self._factory is None:
            return self
        try:
            self._jetson = self._factory()
            self._jetson.start()
            if not self._jetson.ok():
                raise RuntimeError("jtop service not responding")
            self._sample()
        except Exception as exc:  # noqa: BLE001 - not a Jetson / service down: no telemetry
            self.error = f"{type(exc).__name__}: {exc}"
            self._close()
            return self
        self.available = True
        self._thread = threading.Thread(target=self._run, name="oat-telemetry", daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        fields = parse_jtop_stats(dict(self._jetson.stats))
        fields["telemetry_time"] = time.time()
        with self._lock:
            self._latest = fields

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                if not self._jetson.ok():
                    break
                self._sample()
            except Exception as exc:  # noqa: BLE001 - stop sampling, keep the loop alive
                self.error = f"{type(exc).__name__}: {exc}"
                break

    def latest(self) -> dict:
        with self._lock:
            return dict(self._latest)

    def _close(self) -> None:
        if self._jetson is not None:
            try:
                self._jetson.close()
            except Exception:  # noqa: BLE001
                pass
            self._jetson = None

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * self._interval + 1)
        self._close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
