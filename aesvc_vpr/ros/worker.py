"""One-slot worker threads: the newest frame wins, so the queue can never grow (no ROS imports).

Subscription callbacks only drop the message into the slot and return, so the executor stays
responsive (parameters, lifecycle services, diagnostics) while a frame takes tens of
milliseconds to decode, embed and search. A frame replaced before the worker took it is counted
as dropped. An optional rate cap spaces processing starts by at least ``1 / max_rate_hz``;
frames that arrive meanwhile replace each other in the slot. The cap is read again whenever a
thread waits, and ``wake`` makes waiting threads re-read it, so a new rate applies at once:
the hold-off is always measured from the last start with the current rate. With several
threads, each takes the newest frame when it is free, so up to that many frames are in flight
and their results can finish out of arrival order.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

log = logging.getLogger(__name__)


class LatestFrameWorker:
    """Processes the most recent submitted item on background threads."""

    def __init__(self, handle: Callable[[Any], None], on_dropped: Callable[[], None],
                 max_rate_hz: Callable[[], float], name: str = 'vpr-worker',
                 threads: int = 1, clock: Callable[[], float] = time.monotonic) -> None:
        """Create a stopped worker.

        Args:
            handle: called on the worker thread with each item taken from the slot; an
                exception is logged and the worker carries on with the next item.
            on_dropped: called (under the slot lock, keep it cheap) for every replaced item.
            max_rate_hz: read before each item, so a run-time change applies at once; <= 0
                means no cap.
            name: thread name, shown in debuggers and py-spy.
            threads: items processed at once; ``handle`` must then be thread-safe.
            clock: monotonic seconds (a test passes a clock it controls).
        """
        self._handle = handle
        self._on_dropped = on_dropped
        self._max_rate_hz = max_rate_hz
        self._cond = threading.Condition()
        self._slot: Any = None
        self._stopping = False
        self._clock = clock
        self._last_start: float | None = None   # clock s of the last item taken
        self._threads = [threading.Thread(target=self._run, name=f'{name}-{i}', daemon=True)
                         for i in range(threads)]

    def start(self) -> None:
        """Start the threads."""
        for thread in self._threads:
            thread.start()

    def submit(self, item: Any) -> None:
        """Put ``item`` in the slot, replacing (and counting) an item not yet taken."""
        with self._cond:
            if self._slot is not None:
                self._on_dropped()
            self._slot = item
            self._cond.notify()

    def wake(self) -> None:
        """Make waiting threads re-read the rate cap (call after changing it)."""
        with self._cond:
            self._cond.notify_all()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Finish the items in progress, discard the slot and join the threads."""
        with self._cond:
            self._stopping = True
            self._slot = None
            self._cond.notify_all()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))

    def _hold_s(self) -> float:
        """Seconds the rate cap still holds the next item (<= 0: free to go)."""
        rate_hz = self._max_rate_hz()
        if rate_hz <= 0 or self._last_start is None:
            return 0.0
        return self._last_start + 1.0 / rate_hz - self._clock()

    def _take(self) -> Any:
        """Wait for an item that the rate cap allows; None when stopping."""
        with self._cond:
            while not self._stopping:
                wait_s = self._hold_s()
                if self._slot is not None and wait_s <= 0:
                    item, self._slot = self._slot, None
                    self._last_start = self._clock()
                    return item
                self._cond.wait(wait_s if self._slot is not None else None)
            return None

    def _run(self) -> None:
        while (item := self._take()) is not None:
            try:
                self._handle(item)
            except Exception:  # a bug in one frame must not stop the node's processing
                log.exception('frame handler failed; continuing with the next frame')
