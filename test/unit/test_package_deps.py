"""package.xml declares rosdep keys that exist, and a key for every third-party import.

rosdep resolves only keys listed in rosdistro's rosdep/*.yaml; an unknown key makes
``rosdep install`` exit 1. KNOWN_KEYS is the list checked by hand against rosdistro (the pull
request that added each non-core key is named), IMPORTS maps every top-level import of the
package and its launch file to its key, and NO_KEY names what rosdistro lacks: those come from
requirements.txt, and package.xml and the README must say so.
"""

from __future__ import annotations

import ast
from pathlib import Path
import re
import sys
import xml.etree.ElementTree as ET

REPO = Path(__file__).resolve().parents[2]

KNOWN_KEYS = {
    # ROS packages (rosdistro's distribution.yaml): resolve for every ROS 2 distribution
    'rclpy', 'builtin_interfaces', 'rcl_interfaces', 'lifecycle_msgs', 'sensor_msgs',
    'geometry_msgs', 'nav_msgs', 'std_msgs', 'std_srvs', 'diagnostic_msgs',
    'visualization_msgs', 'ament_index_python', 'launch', 'launch_ros', 'ament_copyright',
    'ament_flake8', 'ament_pep257', 'ament_xmllint',
    'tf2_ros_py',               # geometry2's Python tf2_ros (the C++ tf2_ros has no module)
    # rosdep/python.yaml, long-standing system-package keys
    'python3-numpy', 'python3-opencv', 'python3-scipy', 'python3-tqdm', 'python3-matplotlib',
    'python3-pil', 'python3-pytest', 'python3-aiohttp',
    # rosdep/python.yaml, added by ros/rosdistro pull requests
    'python3-torch',            # #37485
    'python3-faiss',            # #46631 (system package, pip faiss-cpu where there is none)
    'python3-utm',              # #44654
    'python3-timm-pip',         # #34466
    'python3-onnxruntime-pip',  # #32307
}
IMPORTS = {
    'rclpy': 'rclpy', 'builtin_interfaces': 'builtin_interfaces',
    'rcl_interfaces': 'rcl_interfaces', 'sensor_msgs': 'sensor_msgs',
    'geometry_msgs': 'geometry_msgs', 'nav_msgs': 'nav_msgs', 'std_msgs': 'std_msgs',
    'std_srvs': 'std_srvs', 'diagnostic_msgs': 'diagnostic_msgs',
    'visualization_msgs': 'visualization_msgs', 'ament_index_python': 'ament_index_python',
    'launch': 'launch', 'launch_ros': 'launch_ros', 'tf2_ros': 'tf2_ros_py',
    'numpy': 'python3-numpy', 'cv2': 'python3-opencv', 'scipy': 'python3-scipy',
    'tqdm': 'python3-tqdm', 'matplotlib': 'python3-matplotlib', 'PIL': 'python3-pil',
    'utm': 'python3-utm', 'torch': 'python3-torch', 'faiss': 'python3-faiss',
    'timm': 'python3-timm-pip', 'onnxruntime': 'python3-onnxruntime-pip',
}
# no rosdep key (checked in rosdep/python.yaml): installed by pip install -r requirements.txt
NO_KEY = {'safetensors': 'safetensors', 'rosbags': 'rosbags', 'mcap': 'mcap', 'onnx': 'onnx',
          'openvino': 'openvino', 'nncf': 'nncf', 'ray': 'ray', 'fsspec': 'fsspec'}
# declared though not imported by name: rclpy.lifecycle needs lifecycle_msgs, and fsspec's
# http(s) filesystem needs aiohttp
INDIRECT = {'lifecycle_msgs', 'python3-aiohttp'}


def declared() -> dict[str, set[str]]:
    root = ET.parse(REPO / 'package.xml').getroot()
    out: dict[str, set[str]] = {}
    for element in root:
        if element.tag.endswith('depend'):
            out.setdefault(element.tag, set()).add(element.text.strip())
    return out


def third_party_imports() -> dict[str, str]:
    """Top-level third-party module -> one file importing it."""
    found: dict[str, str] = {}
    files = [*(REPO / 'aesvc_vpr').rglob('*.py'), *(REPO / 'launch').glob('*.py')]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split('.')[0]
                if top not in sys.stdlib_module_names and top != 'aesvc_vpr':
                    found.setdefault(top, str(path.relative_to(REPO)))
    return found


def test_every_declared_key_exists_in_rosdistro() -> None:
    keys = set().union(*declared().values())
    assert keys - KNOWN_KEYS == set()


def test_every_import_is_declared_or_named_as_pip_only() -> None:
    imports = third_party_imports()
    unmapped = {m: f for m, f in imports.items() if m not in IMPORTS and m not in NO_KEY}
    assert unmapped == {}, 'map these imports to a rosdep key or NO_KEY'
    exec_keys = declared()['exec_depend']
    missing = {IMPORTS[m] for m in imports if m in IMPORTS} - exec_keys
    assert missing == set()
    unused = exec_keys - {IMPORTS[m] for m in imports if m in IMPORTS} - INDIRECT
    assert unused == set(), 'declared but never imported (e.g. cv_bridge)'


def test_pip_only_dependencies_are_said_and_pinned() -> None:
    requirements = (REPO / 'requirements.txt').read_text()
    package_xml = (REPO / 'package.xml').read_text()
    readme = (REPO / 'README.md').read_text()
    for module, dist in NO_KEY.items():
        assert re.search(rf'\n{dist}(\[[a-z,]+\])?(>=|==)', requirements), dist
        assert dist in package_xml and dist in readme, dist
