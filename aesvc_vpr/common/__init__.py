"""Layer 1: helpers every layer shares.

Crash-safe writes, writer locks, crash points, hashes, progress bars, stamps, provenance.
"""

from aesvc_vpr.common.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    'atomic_write': 'fileio', 'save_npy': 'fileio', 'sha256_file': 'fileio',
    'sha256_bytes': 'fileio', 'lazy_exports': 'lazy', 'git_commit': 'provenance',
    'provenance': 'provenance', 'versions': 'provenance', 'stamp_ns': 'stamps',
    'time_ns': 'stamps', 'sec_nanosec': 'stamps', 'check_writable': 'fileio',
    'fsync_dir': 'fileio', 'crash_point': 'crashpoints', 'writer_lock': 'locks',
    'DirectoryLocked': 'locks', 'progress_bar': 'progress',
})
