"""launch/aesvc_vpr.launch.py parses, and its names match setup.py and config/.

launch itself is not installed here, so the file is read with ast instead of being executed.
"""

from __future__ import annotations

import ast
from pathlib import Path

from aesvc_vpr.ros.params import PARAMS_BY_NAME

REPO = Path(__file__).resolve().parents[3]
LAUNCH = REPO / 'launch' / 'aesvc_vpr.launch.py'


def constants(tree: ast.Module) -> dict[str, object]:
    """Module-level NAME = 'literal' assignments."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    out[target.id] = node.value.value
    return out


def setup_call() -> ast.Call:
    tree = ast.parse((REPO / 'setup.py').read_text())
    return next(n for n in ast.walk(tree) if isinstance(n, ast.Call)
                and getattr(n.func, 'id', '') == 'setup')


def test_launch_file_defines_generate_launch_description() -> None:
    tree = ast.parse(LAUNCH.read_text(), filename=str(LAUNCH))
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert 'generate_launch_description' in functions
    assert not functions['generate_launch_description'].args.args


def test_launch_names_match_setup_and_config() -> None:
    launch = constants(ast.parse(LAUNCH.read_text()))
    setup_consts = constants(ast.parse((REPO / 'setup.py').read_text()))
    assert launch['PACKAGE'] == setup_consts['PACKAGE'] == 'aesvc_vpr'
    entry_points = ast.literal_eval(next(
        k.value for k in setup_call().keywords if k.arg == 'entry_points'))
    scripts = {line.split('=')[0].strip(): line.split('=')[1].strip()
               for line in entry_points['console_scripts']}
    assert scripts['aesvc-vpr-node'] == 'aesvc_vpr.ros.node:main'
    # ros2 run's executable: a launcher installed into lib/<package> as a data file
    assert launch['EXECUTABLE'] == setup_consts['EXECUTABLE']
    launcher = REPO / 'scripts' / launch['EXECUTABLE']
    assert 'aesvc_vpr.ros.node' in launcher.read_text() and launcher.stat().st_mode & 0o111
    assert (REPO / 'config' / launch['PARAMS_FILE']).is_file()
    # setup.py installs launch/*.launch.py and config/*.yaml where the launch file looks
    data_files = ast.unparse(next(k.value for k in setup_call().keywords
                                  if k.arg == 'data_files'))
    assert "'launch/*.launch.py'" in data_files and "'config/*.yaml'" in data_files


def test_launch_arguments_and_remaps() -> None:
    source = LAUNCH.read_text()
    tree = ast.parse(source)
    declared = {ast.literal_eval(n.args[0]) for n in ast.walk(tree) if isinstance(n, ast.Call)
                and getattr(n.func, 'id', '') == 'DeclareLaunchArgument'}
    assert declared == {'params_file', 'image_topic', 'odom_topic', 'namespace', 'map_path',
                        'head_path', 'model', 'use_sim_time'}
    # every override names a real node parameter
    overrides = ast.literal_eval(next(
        n.value for n in tree.body if isinstance(n, ast.Assign)
        and getattr(n.targets[0], 'id', '') == 'OVERRIDES'))
    assert set(overrides) == {'map_path', 'head_path', 'model'}
    assert set(overrides.values()) <= set(PARAMS_BY_NAME)
    node_call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call)
                     and getattr(n.func, 'id', '') == 'Node')
    keywords = {k.arg for k in node_call.keywords}
    assert {'package', 'executable', 'namespace', 'parameters', 'remappings'} <= keywords
    remaps = next(k.value for k in node_call.keywords if k.arg == 'remappings')
    remapped = {ast.literal_eval(pair.elts[0]) for pair in remaps.elts}
    assert remapped == {'image', 'image/compressed', 'odom'}
