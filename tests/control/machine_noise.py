"""How much a bare process on this machine gets preempted: the yardstick that separates loop
jitter from a noisy (shared, virtualized) machine in the timing tests."""
import time


def preempted_window_fraction(seconds=4.0, window=0.02, gap=1e-3):
    """Fraction of 20 ms windows in which a bare spinning process lost the CPU for > 1 ms."""
    t0 = t = time.perf_counter()
    bad = set()
    while t - t0 < seconds:
        n = time.perf_counter()
        if n - t > gap:
            bad.add(int((t - t0) / window))
        t = n
    return len(bad) / (seconds / window)
