"""pip's install gives the layout ``ros2 run`` and ``ros2 launch`` look for (issue 18, item 1).

The package is copied to a temporary folder (so no build/ or egg-info lands in the work tree),
built with ``pip wheel --no-deps`` and installed without dependencies into a throwaway venv.
ros2cli and launch are not on PyPI, so the test checks what they look up: the ament index
marker, share/aesvc_vpr (package.xml, launch, config) and the executable lib/aesvc_vpr/vpr_node,
found through ament_index_python with AMENT_PREFIX_PATH set to the venv, as a sourced ROS
environment would.
"""

from __future__ import annotations

import os
from pathlib import Path
import shutil
import stat
import subprocess
import sys
import zipfile

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ('setup.py', 'setup.cfg', 'package.xml', 'resource', 'launch', 'config', 'scripts',
           'aesvc_vpr')
DATA = {'lib/aesvc_vpr/vpr_node', 'share/ament_index/resource_index/packages/aesvc_vpr',
        'share/aesvc_vpr/package.xml', 'share/aesvc_vpr/launch/aesvc_vpr.launch.py',
        'share/aesvc_vpr/config/aesvc_vpr.yaml'}


@pytest.fixture(scope='module')
def wheel(tmp_path_factory) -> Path:
    """Build the wheel from a copy of the sources."""
    tmp = tmp_path_factory.mktemp('pkg')
    src = tmp / 'src'
    src.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns('__pycache__'))
        else:
            shutil.copy2(path, src / name)
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
                    '-q', '-w', str(tmp / 'dist'), str(src)], check=True, timeout=300)
    return next((tmp / 'dist').glob('aesvc_vpr-*.whl'))


def test_wheel_carries_the_ros_data_files(wheel) -> None:
    with zipfile.ZipFile(wheel) as archive:
        data = {info.filename.split('.data/data/', 1)[1]: info for info in archive.infolist()
                if '.data/data/' in info.filename}
        entry_points = archive.read(next(n for n in archive.namelist()
                                         if n.endswith('entry_points.txt'))).decode()
    assert set(data) == DATA
    mode = data['lib/aesvc_vpr/vpr_node'].external_attr >> 16
    assert mode & stat.S_IXUSR, oct(mode)
    assert 'aesvc-vpr-node = aesvc_vpr.ros.node:main' in entry_points


def test_installed_layout_resolves_through_the_ament_index(wheel, tmp_path) -> None:
    venv = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], check=True)
    python = venv / 'bin' / 'python'
    subprocess.run([sys.executable, '-m', 'pip', '--python', str(python), 'install', '-q',
                    '--no-deps', str(wheel)], check=True, timeout=300)
    executable = venv / 'lib' / 'aesvc_vpr' / 'vpr_node'
    assert os.access(executable, os.X_OK)
    assert 'aesvc_vpr.ros.node' in executable.read_text()
    # what ros2 run (package prefix + lib/<package>) and ros2 launch (share directory) look up
    from ament_index_python.packages import get_package_prefix, get_package_share_directory
    os.environ['AMENT_PREFIX_PATH'], saved = str(venv), os.environ.get('AMENT_PREFIX_PATH')
    try:
        assert Path(get_package_prefix('aesvc_vpr')) == venv
        share = Path(get_package_share_directory('aesvc_vpr'))
    finally:
        if saved is None:
            del os.environ['AMENT_PREFIX_PATH']
        else:
            os.environ['AMENT_PREFIX_PATH'] = saved
    assert (share / 'launch' / 'aesvc_vpr.launch.py').is_file()
    assert (share / 'config' / 'aesvc_vpr.yaml').read_text() == \
        (REPO / 'config' / 'aesvc_vpr.yaml').read_text()
    # the launcher runs the venv's own interpreter on the installed package (the venv has no
    # dependencies installed, so importing the node stops at its first third-party import)
    proc = subprocess.run([str(executable), '--ros-args'], capture_output=True, text=True,
                          timeout=60, env={'PATH': '/usr/bin:/bin'}, cwd=tmp_path)
    assert proc.returncode != 0
    assert f'{venv}/lib/' in proc.stderr and 'aesvc_vpr/ros/node.py' in proc.stderr, proc.stderr


@pytest.mark.parametrize('given, expected', [(None, 'PASSIVE'), ('ACTIVE', 'ACTIVE')])
def test_the_launcher_makes_openmp_wait_passively_unless_told(tmp_path, given, expected):
    # the installed layout: <prefix>/lib/aesvc_vpr/vpr_node runs <prefix>/bin/python3; a stand-in
    # interpreter reports the environment and arguments it was started with
    launcher = tmp_path / 'lib' / 'aesvc_vpr' / 'vpr_node'
    launcher.parent.mkdir(parents=True)
    shutil.copy(REPO / 'scripts' / 'vpr_node', launcher)
    python = tmp_path / 'bin' / 'python3'
    python.parent.mkdir()
    python.write_text('#!/bin/sh\necho "$OMP_WAIT_POLICY $*"\n')
    python.chmod(0o755)
    env = {'PATH': '/usr/bin:/bin', **({'OMP_WAIT_POLICY': given} if given else {})}
    proc = subprocess.run(['sh', str(launcher), '--ros-args', '-r', '__ns:=/r1'],
                          capture_output=True, text=True, timeout=60, env=env, check=True)
    assert proc.stdout.split() == [expected, '-m', 'aesvc_vpr.ros.node', '--ros-args', '-r',
                                   '__ns:=/r1']
