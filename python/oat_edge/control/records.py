"""Per-cycle records to CSV, written atomically (a crash or Ctrl-C never leaves half a file)."""

from __future__ import annotations

import csv
import io

from ..atomic import write_text


def write_csv(records: list[dict], path) -> None:
    keys: list[str] = []
    for r in records:  # telemetry fields may appear only in some records
        keys.extend(k for k in r if k not in keys)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    for r in records:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in keys})
    write_text(path, buf.getvalue())
