"""ament_python package: colcon builds it in a ROS 2 workspace, pip installs it elsewhere."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'aesvc_vpr'
EXECUTABLE = 'vpr_node'

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{PACKAGE}']),
        (f'share/{PACKAGE}', ['package.xml']),
        (f'share/{PACKAGE}/launch', glob('launch/*.launch.py')),
        (f'share/{PACKAGE}/config', glob('config/*.yaml')),
        # ros2 run looks in lib/<package>; console scripts land in bin/ under pip (setup.cfg's
        # install_scripts applies to colcon's `setup.py install`), so it ships as a data file
        (f'lib/{PACKAGE}', [f'scripts/{EXECUTABLE}']),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='aesvc_vpr developers',
    maintainer_email='aesvc-vpr@example.com',
    description='DINOv2 + AE-SVC / (SS)2D visual place recognition for ROS 2',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'aesvc-vpr-node = aesvc_vpr.ros.node:main',
            'aesvc-vpr = aesvc_vpr.cli:main',
        ],
    },
)
