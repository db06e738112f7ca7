"""package.xml is well-formed format 3 and names the rosdep keys the package needs."""

from pathlib import Path
import xml.etree.ElementTree as ET

REPO = Path(__file__).resolve().parents[1]
REQUIRED_KEYS = {
    'rclpy', 'sensor_msgs', 'geometry_msgs', 'std_msgs', 'diagnostic_msgs',
    'python3-numpy', 'python3-opencv',
}


def test_package_xml() -> None:
    root = ET.parse(REPO / 'package.xml').getroot()
    assert root.tag == 'package' and root.get('format') == '3'
    assert root.findtext('name') == 'aesvc_vpr'
    assert root.find('export/build_type').text == 'ament_python'
    deps = {e.text for e in root if e.tag.endswith('depend')}
    assert REQUIRED_KEYS <= deps, f'missing rosdep keys: {REQUIRED_KEYS - deps}'


def test_setup_installs_share_files() -> None:
    text = (REPO / 'setup.py').read_text()
    for needle in ("'resource/", "'launch/*.launch.py'", "'config/*.yaml'", 'console_scripts',
                   "f'lib/{PACKAGE}'"):
        assert needle in text
