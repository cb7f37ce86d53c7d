"""The web server's memory of the board: trends for the page, and the counters at
the start of each window the figures are computed over.

Everything is bounded, however long the process runs: the trend holds one hour
of samples, and each window holds CHECKPOINTS copies of the counters it needs
(so a window of an hour starts within 3 minutes of an hour ago).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from flows.exposition import Board
from flows.web.figures import FIGURES, WINDOWED, Totals, View, seconds

STEP_S = 5.0  # a sample every 5 s: the page's trend resolution
TREND_S = 3600.0  # the trend covers the last hour
CHECKPOINTS = 20


class History:
    """Samples of a board taken every `step` seconds once it is ready."""

    def __init__(
        self, board: Board, clock: Callable[[], float] = time.time, step: float = STEP_S
    ) -> None:
        self.board, self.clock, self.step = board, clock, step
        self.trend: deque[tuple[float, dict[str, float | None]]] = deque(
            maxlen=int(TREND_S / step) + 1
        )
        self.checkpoints: dict[str, deque[tuple[float, Totals]]] = {
            window: deque(maxlen=CHECKPOINTS + 2) for window in WINDOWED
        }
        self._lock = threading.Lock()

    def view(self, totals: Totals | None = None) -> View:
        """The board now, with the counters at the start of each window."""
        now = self.clock()
        totals = self.board.totals() if totals is None else totals
        with self._lock:
            bases = {
                window: start
                for window, points in self.checkpoints.items()
                if (start := _last(points, now - seconds(window))) is not None
            }
        return View(now, totals, bases)

    def sample(self) -> None:
        """Record the figures now, and the counters of every window due a checkpoint."""
        view = self.view()
        values = {figure.id: figure.source.read(view).value for figure in FIGURES}
        with self._lock:
            self.trend.append((view.now, values))
            for window, points in self.checkpoints.items():
                if not points or view.now - points[-1][0] >= seconds(window) / CHECKPOINTS:
                    kept = {name: dict(view.totals.get(name, {})) for name in WINDOWED[window]}
                    points.append((view.now, kept))

    def points(self, since: float) -> list[dict[str, Any]]:
        """Trend samples taken after `since` (unix seconds), oldest first."""
        with self._lock:
            return [{"t": at, "values": values} for at, values in self.trend if at > since]

    def latest(self) -> dict[str, Any] | None:
        """The newest trend sample, for the page to append."""
        with self._lock:
            at, values = self.trend[-1] if self.trend else (None, None)
        return None if at is None else {"t": at, "values": values}

    def start(self, stop: threading.Event) -> None:
        """Sample in a daemon thread until `stop` is set, from the moment the board is ready."""

        def loop() -> None:
            self.board.ready.wait()
            while not stop.is_set():
                self.sample()
                stop.wait(self.step)

        threading.Thread(target=loop, name="web-history", daemon=True).start()


def _last(points: deque[tuple[float, Totals]], until: float) -> tuple[float, Totals] | None:
    """The newest point taken at or before `until`."""
    return next((point for point in reversed(points) if point[0] <= until), None)
