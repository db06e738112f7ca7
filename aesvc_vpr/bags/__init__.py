"""Recordings: reading and writing bags, and the query stream of a recording.

ROS 1 and rosbag2 bags are read, ground truth is interpolated at image stamps, and query sets
are written as bags. Raises only BagError.
"""

from aesvc_vpr.common.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    'BagSet': 'reader', 'BagMessage': 'reader', 'QuerySource': 'queries',
    'QueryPlan': 'queries', 'plan_queries': 'queries', 'query_messages': 'queries',
    'scored_images': 'queries', 'GroundTruth': 'groundtruth', 'PoseTrack': 'groundtruth',
    'interpolate_poses': 'groundtruth', 'quaternion_yaw': 'groundtruth',
    'track_from_messages': 'groundtruth', 'BagFrame': 'writer', 'BagLayout': 'writer',
    'write_query_bag': 'writer', 'encode_image': 'writer', 'track_from_tf': 'tf_track',
    'RecoveredMcap': 'mcap_recovery', 'FrameCounts': 'queries',
})
