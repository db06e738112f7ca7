"""Map a memory-mapped array's pages into the process ahead of use, in a background thread.

A re-rank reads a few thousand random rows of a multi-GB memory-mapped store per query. Each
first touch of a page costs a page fault even when the file is in the page cache: ~500 faults and
~3 ms per query at 1600 rows of a 10M-row store (benchmarks/README.md, "10M latency"), and a
node only stops paying once every page has been touched. ``madvise(MADV_POPULATE_READ)``
(Linux >= 5.14) maps them all at once: 0.3-0.5 s for 5 GB already in the page cache. It runs in a
daemon thread (ctypes releases the GIL) so that a node start does not wait for it, and it is
skipped for a mapping larger than half the available memory, which would only evict itself.
Older kernels get ``MADV_WILLNEED`` (read the file into the page cache, map nothing).
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import threading
import time

import numpy as np

log = logging.getLogger(__name__)

MADV_POPULATE_READ = 22      # linux/mman.h, since 5.14
MADV_WILLNEED = 3


def _memory_available_bytes() -> int:
    """Return MemAvailable of /proc/meminfo in bytes (0 where it cannot be read)."""
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _madvise(address: int, length: int, advice: int) -> int:
    """Call madvise(2) on a page-aligned range; return 0 or the errno."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.madvise.restype = ctypes.c_int
    return 0 if libc.madvise(address, length, advice) == 0 else ctypes.get_errno()


def populate(array: np.ndarray) -> bool:
    """Map every page of a memory-mapped array now (blocking); tell whether it was done.

    Returns False, doing nothing, for an array that is not memory-mapped or larger than half of
    the available memory.
    """
    if not isinstance(array, np.memmap) or array.nbytes == 0:
        return False
    available = _memory_available_bytes()
    if available and array.nbytes > available // 2:
        log.info('not prefaulting a %.1f GB mapping: %.1f GB of memory available',
                 array.nbytes / 1e9, available / 1e9)
        return False
    start_s = time.perf_counter()
    address = array.ctypes.data
    aligned = address - address % mmap.PAGESIZE
    length = address + array.nbytes - aligned
    error = _madvise(aligned, length, MADV_POPULATE_READ)
    if error:
        error = _madvise(aligned, length, MADV_WILLNEED)
    if error:
        log.info('prefaulting a %.1f GB mapping failed (errno %d)', array.nbytes / 1e9, error)
        return False
    log.info('prefaulted a %.1f GB mapping in %.2f s', array.nbytes / 1e9,
             time.perf_counter() - start_s)
    return True


def populate_in_background(array: np.ndarray) -> threading.Thread | None:
    """Start ``populate(array)`` in a daemon thread; return it (None: nothing to map)."""
    if not isinstance(array, np.memmap):
        return None
    thread = threading.Thread(target=populate, args=(array,), name='prefault', daemon=True)
    thread.start()
    return thread
