"""A gate between lifecycle transitions (executor thread) and frames in flight (worker threads).

A frame enters the gate before it touches the mode and leaves it after publishing. A transition
closes the gate and waits until the frames inside have left: after ``close`` returns, no frame
uses the mode or publishes until ``admit`` is called again, so deactivate and cleanup can tear the
mode down without a lock held around the whole frame (which would serialise ``workers`` > 1).
"""

from __future__ import annotations

import threading


class FrameGate:
    """Counts frames in flight; closed until ``admit``."""

    def __init__(self) -> None:
        """Start closed with nothing inside."""
        self._cond = threading.Condition()
        self._open = False
        self._inside = 0

    @property
    def inside(self) -> int:
        """Frames inside the gate now."""
        with self._cond:
            return self._inside

    def admit(self) -> None:
        """Let frames in."""
        with self._cond:
            self._open = True

    def enter(self) -> bool:
        """Enter for one frame; False (do nothing with it) while the gate is closed."""
        with self._cond:
            if not self._open:
                return False
            self._inside += 1
            return True

    def leave(self) -> None:
        """Leave after a successful ``enter``."""
        with self._cond:
            self._inside -= 1
            self._cond.notify_all()

    def close(self, timeout_s: float | None = None) -> bool:
        """Refuse new frames and wait for those inside; False if some are still inside."""
        with self._cond:
            self._open = False
            return self._cond.wait_for(lambda: self._inside == 0, timeout_s)
