"""Replaying recordings offline through the core and live through the node, and their report.

The live half here is ROS-free (it runs the node as a subprocess); ``aesvc_vpr.ros.bag_player``
publishes. Raises only ReplayError.
"""

from aesvc_vpr.common.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    'replay_bag': 'offline', 'ReplayFrames': 'frames', 'ReplayScores': 'frames',
    'score_replay': 'report', 'report_replay': 'report', 'NodeProcess': 'live',
    'PlayConfig': 'live', 'frames_from_outputs': 'live', 'loop_frames': 'loops',
})
