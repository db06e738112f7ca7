"""Start vpr_node with a parameters file, an image topic remap and an optional namespace.

Example: ``ros2 launch aesvc_vpr aesvc_vpr.launch.py map_path:=/data/maps/pitts
image_topic:=/camera/image_raw``. ``map_path``, ``head_path`` and ``model`` override the
parameters file when given (empty keeps its value), so the common case needs no file of one's
own; ``use_sim_time`` follows /clock (bag playback); ``odom_topic`` feeds loop_closure mode and
the localization filter.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = 'aesvc_vpr'
EXECUTABLE = 'vpr_node'
PARAMS_FILE = 'aesvc_vpr.yaml'
# launch argument -> node parameter, passed only when the argument is not empty
OVERRIDES = {'map_path': 'map_path', 'head_path': 'head_path', 'model': 'backbone.model_name'}


def node_with_overrides(context, *args, **kwargs) -> list:
    """Build the node once the arguments are known: empty ones leave the file's values."""
    overrides = {param: LaunchConfiguration(arg).perform(context)
                 for arg, param in OVERRIDES.items()}
    overrides = {param: value for param, value in overrides.items() if value}
    sim_time = LaunchConfiguration('use_sim_time').perform(context)
    overrides['use_sim_time'] = sim_time.strip().lower() in ('true', '1')
    image_topic = LaunchConfiguration('image_topic')
    return [Node(
        package=PACKAGE,
        executable=EXECUTABLE,
        name=EXECUTABLE,
        namespace=LaunchConfiguration('namespace'),
        parameters=[LaunchConfiguration('params_file'), overrides],
        remappings=[
            ('image', image_topic),
            ('image/compressed', [image_topic, '/compressed']),
            ('odom', LaunchConfiguration('odom_topic')),
        ],
        output='screen',
    )]


def generate_launch_description() -> LaunchDescription:
    """Declare the launch arguments and the node."""
    default_params = os.path.join(get_package_share_directory(PACKAGE), 'config', PARAMS_FILE)
    return LaunchDescription([
        DeclareLaunchArgument('params_file', default_value=default_params,
                              description='vpr_node parameters (YAML)'),
        DeclareLaunchArgument('map_path', default_value='',
                              description='map directory from aesvc-vpr build-map (required '
                                          'unless the parameters file sets it)'),
        DeclareLaunchArgument('head_path', default_value='',
                              description="projection head file; '' uses the map's own head"),
        DeclareLaunchArgument('model', default_value='',
                              description='backbone.model_name: auto, patchgrid, a DINOv2 '
                                          "name or onnx:FILE; '' keeps the parameters file's"),
        DeclareLaunchArgument('use_sim_time', default_value='false',
                              description='use /clock (bag playback) instead of the wall clock'),
        DeclareLaunchArgument('image_topic', default_value='image',
                              description='camera topic; <image_topic>/compressed with '
                                          'image_transport compressed'),
        DeclareLaunchArgument('odom_topic', default_value='odom',
                              description='odometry (nav_msgs/Odometry): loop_closure '
                                          "keyframes, localization's sequence filter"),
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of the node and its topics'),
        OpaqueFunction(function=node_with_overrides),
    ])
