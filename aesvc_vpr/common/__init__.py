"""Layer 1: small helpers every layer shares (crash-safe writes, hashes, stamps, provenance)."""

from aesvc_vpr.common.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    'atomic_write': 'fileio', 'save_npy': 'fileio', 'sha256_file': 'fileio',
    'sha256_bytes': 'fileio', 'lazy_exports': 'lazy', 'git_commit': 'provenance',
    'provenance': 'provenance', 'versions': 'provenance', 'stamp_ns': 'stamps',
    'time_ns': 'stamps', 'sec_nanosec': 'stamps',
})
