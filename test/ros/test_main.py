"""The console entry: a failing configure or a bad parameter is one error line and exit 1."""

from __future__ import annotations

from pathlib import Path
import subprocess
import sys

CONFIG = Path(__file__).resolve().parents[2] / 'config' / 'aesvc_vpr.yaml'


def run_node(*ros_args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', 'aesvc_vpr.ros.node', '--ros-args', *ros_args],
                          capture_output=True, text=True, timeout=120)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if 'error' in line.lower()]


def test_missing_map_fails_configure_with_one_line(tmp_path) -> None:
    # the shipped params file must load in rclpy; only the map is wrong
    proc = run_node('--params-file', str(CONFIG), '-p', 'backbone.model_name:=patchgrid',
                    '-p', f'map_path:={tmp_path / "no_map"}')
    assert proc.returncode == 1
    assert 'Traceback' not in proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and 'configure failed' in lines[0] and 'no_map' in lines[0]


def test_invalid_parameter_value_is_one_line() -> None:
    proc = run_node('-p', 'image_reliability:=sometimes')
    assert proc.returncode == 1
    assert 'Traceback' not in proc.stderr
    assert error_lines(proc.stderr) == [
        "error: vpr_node: image_reliability must be one of ('auto', 'reliable', 'best_effort'), "
        "got 'sometimes'"]
