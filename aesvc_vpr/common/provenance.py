"""Where a result came from: the git commit and the versions of the libraries that produced it."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
import platform
import subprocess

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ('aesvc_vpr', 'numpy', 'torch', 'timm', 'faiss-cpu', 'rosbags', 'rosbags-image',
            'opencv-python-headless', 'ros-kilted-rclpy')


def git_commit(repo: Path = REPO) -> str:
    """``git rev-parse HEAD`` of the source tree, or 'unknown' (not a clone, no commit, no git)."""
    try:
        out = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=repo, capture_output=True,
                             text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return 'unknown'
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else 'unknown'


def versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Look up what is installed of ``packages``, and the python version."""
    found = {'python': platform.python_version()}
    for name in packages:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def provenance() -> dict[str, object]:
    """Both, ready for a JSON report."""
    return {'git_commit': git_commit(), 'versions': versions()}
