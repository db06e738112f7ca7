"""The package's layering (.importlinter), checked with import-linter as the suite runs.

One layer per subpackage, imports running one way, no cycles, and no rclpy below the node: the
contracts in .importlinter say so, and these tests make a broken contract fail the suite. The
second test proves the contracts can fail, on a copy of the package with one upward import.
"""

from __future__ import annotations

import os
from pathlib import Path
import shutil
import subprocess
import sys

REPO = Path(__file__).resolve().parents[1]
LINT = ('import sys; from importlinter.cli import lint_imports_command; '
        'sys.exit(lint_imports_command())')
TOP_LEVEL_MODULES = {'__init__.py', '__main__.py', 'errors.py', 'config.py'}


def lint_imports(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if pythonpath is not None:
        env['PYTHONPATH'] = str(pythonpath)
    return subprocess.run([sys.executable, '-c', LINT, '--config', '.importlinter', '--no-cache'],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_import_contracts_hold() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'Contracts: 3 kept, 0 broken.' in result.stdout


def test_an_upward_import_breaks_the_layers(tmp_path: Path) -> None:
    shutil.copytree(REPO / 'aesvc_vpr', tmp_path / 'aesvc_vpr',
                    ignore=shutil.ignore_patterns('__pycache__'))
    shutil.copy(REPO / '.importlinter', tmp_path / '.importlinter')
    patchgrid = tmp_path / 'aesvc_vpr' / 'backbone' / 'patchgrid.py'
    patchgrid.write_text(patchgrid.read_text() + '\nimport aesvc_vpr.data.datasets  # noqa\n')
    result = lint_imports(tmp_path, pythonpath=tmp_path)
    assert result.returncode != 0
    assert 'aesvc_vpr.backbone.patchgrid -> aesvc_vpr.data.datasets' in result.stdout


def test_only_the_root_modules_live_outside_a_subpackage() -> None:
    loose = {p.name for p in (REPO / 'aesvc_vpr').glob('*.py')} - TOP_LEVEL_MODULES
    assert not loose, f'modules outside a layer subpackage: {sorted(loose)}'
    for package in (p for p in (REPO / 'aesvc_vpr').iterdir() if p.is_dir()
                    and p.name != '__pycache__'):
        assert (package / '__init__.py').is_file(), f'{package} is not a package'
