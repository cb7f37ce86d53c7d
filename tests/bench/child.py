"""`opscockpit` as a measured child: `python -m tests.bench.child [--entries S] ARGS...`.

Runs the same `flows.cli.main(ARGS)` as the `opscockpit` script, and adds what
the parent cannot observe from outside:

- its peak RSS at exit, as `bench-vmhwm-kib N` on stderr. ru_maxrss (getrusage,
  wait4) is no use for a child: at exec Linux keeps the high-water mark of the
  pre-exec image, and subprocess spawns with vfork, so a small child "peaks" at the
  RSS of the benchmark process. VmHWM belongs to the exec'd image alone.
- with `--entries S` (replay only), every S seconds the events read so far and
  the `cockpit_state_entries` gauge of the replay's board (orders, receipts,
  orphans, dedup ids, timers), as `bench-entries {"events": N, "entries": {...}}`
  on stderr.
"""

from __future__ import annotations

import atexit
import sys
import threading
import time
from typing import Any

import orjson

PEAK_MARK = "bench-vmhwm-kib"
ENTRIES_MARK = "bench-entries"


def report_peak() -> None:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                sys.stderr.write(f"{PEAK_MARK} {line.split()[1]}\n")
                sys.stderr.flush()


def watch_entries(every: float) -> None:
    """Capture the replay's board and report its state entries periodically."""
    import flows.replay
    from flows.settings import Runtime
    from tests.bench.common import board_events_seen

    boards: list[Any] = []

    class Recorded(Runtime):
        def __post_init__(self) -> None:
            super().__post_init__()
            boards.append(self.board)

    flows.replay.Runtime = Recorded  # type: ignore[attr-defined]  # replay builds this one

    def sample() -> None:
        while True:
            time.sleep(every)
            if boards:
                totals = boards[0].totals()
                sample = {
                    "events": board_events_seen(totals),
                    "entries": totals.get("cockpit_state_entries", {}),
                }
                sys.stderr.write(f"{ENTRIES_MARK} {orjson.dumps(sample).decode()}\n")
                sys.stderr.flush()

    threading.Thread(target=sample, name="bench-entries", daemon=True).start()


def main() -> int:
    args = sys.argv[1:]
    if args[:1] == ["--entries"]:
        watch_entries(float(args[1]))
        args = args[2:]
    atexit.register(report_peak)
    from flows.cli import main as opscockpit

    return opscockpit(args)


if __name__ == "__main__":
    sys.exit(main())
