"""Fixed-rate control of a robot by a policy, one concept per module:

scheduler      when cycles run (absolute deadlines on the real clock, or a virtual clock)
priority       SCHED_FIFO for the control thread, never for the threads that may block
sensor         observations read off the actuator's path, checked and timestamped
workers        who runs act() (inline, simulated background, or a background thread)
job_thread     the one-job-at-a-time daemon thread behind the sensor and the inference worker
action_queue   which action of which chunk is sent next (receding horizon)
safety         every action sent is finite and inside the bundle's bounds
error_log      failures counted by source, first distinct messages kept
loop           ControlLoop, tying the above together
statistics     percentiles and the loop summary; records: per-cycle CSV
telemetry      board load/temperature/power from jtop on a Jetson
"""

from .loop import ControlLoop
from .policy_spec import info_bounds
from .priority import demote_to_normal_priority, set_realtime_priority
from .records import write_csv
from .scheduler import FixedRateScheduler, VirtualScheduler
from .statistics import percentiles, summarize
from .workers import InferenceResult, InlineWorker, ThreadWorker

__all__ = ["ControlLoop", "FixedRateScheduler", "InferenceResult", "InlineWorker", "ThreadWorker",
           "VirtualScheduler", "demote_to_normal_priority", "info_bounds", "percentiles",
           "set_realtime_priority", "summarize", "write_csv"]
