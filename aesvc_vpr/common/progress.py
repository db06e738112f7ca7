"""Progress bars that show on a terminal and stay out of log files.

A tqdm bar redraws with carriage returns many times a second, which fills a log file written
without a terminal. Here a bar draws only when stderr is a TTY; otherwise it is silent.
"""

from __future__ import annotations

from typing import Any

from tqdm import tqdm


def progress_bar(iterable: Any = None, *, enabled: bool = True, **kwargs: Any) -> tqdm:
    """Return a tqdm bar (same arguments) that is disabled off a terminal or when not ``enabled``.

    ``disable=None`` is tqdm's own rule: draw only when the output stream is a TTY.
    """
    return tqdm(iterable, disable=None if enabled else True, **kwargs)
