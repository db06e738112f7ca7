"""Mode 2, ROS half: publish a bag's images to the live node and record what it answers.

Images go out at bag time (their receive-time spacing) divided by the rate, with their header
stamps unchanged, on ``<ns>/image`` or ``<ns>/image/compressed``. The node's answer is its
``~/ranked_candidates`` (PointCloud2: positions, yaw, score and map row of each candidate),
keyed by its header stamp, so answers that finish out of order (``workers`` > 1) still land on
their own image. The node's latched ``~/map_origin`` says where its map frame lies in UTM; it
is waited for with the first answer and kept, so positions can be turned back into the map's
UTM (``replay.live.frames_from_outputs``). Its ``~/place_match`` (the sequence filter's
estimate with ``filter.mode: hmm``) is recorded the same way. With an odometry topic, the
bag's odometry (Odometry or pose messages) goes out on ``<ns>/odom`` at its place among the
images, so the filter hears it as it would on the robot.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Any, Iterable, Iterator

from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Pose, PoseWithCovarianceStamped, Quaternion
from geometry_msgs.msg import TransformStamped
from nav_msgs.msg import Odometry
import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image, PointCloud2
from std_msgs.msg import Header

from aesvc_vpr.bags.groundtruth import quaternion_yaw
from aesvc_vpr.bags.reader import BagMessage
from aesvc_vpr.common import stamps
from aesvc_vpr.common.progress import progress_bar
from aesvc_vpr.errors import VprError
from aesvc_vpr.replay.live import NodeOutput, NodeProcess, PlayConfig, PlayLog
from aesvc_vpr.ros import messages
from aesvc_vpr.ros.filter_inputs import ODOM_DEPTH
from aesvc_vpr.ros.frames import ORIGIN_QOS, ORIGIN_TOPIC

log = logging.getLogger(__name__)

OUTPUT_DEPTH = 100
WARMUP_STAMP_NS = 1          # a stamp no real image has: the readiness probe's answer is ignored
WARMUP_PERIOD_S = 1.0


class BagPlayer(Node):
    """Publishes images to the node and collects its answers by stamp."""

    def __init__(self, cfg: PlayConfig, compressed: bool, context: Context) -> None:
        """Create the image and odometry publishers and the answer subscriptions."""
        super().__init__('aesvc_bag_player', context=context)
        self.cfg = cfg
        reliability = (ReliabilityPolicy.RELIABLE if cfg.image_reliability == 'reliable'
                       else ReliabilityPolicy.BEST_EFFORT)
        kind, topic = (CompressedImage, 'image/compressed') if compressed else (Image, 'image')
        self.image_topic = cfg.topic(topic)
        self.images = self.create_publisher(kind, self.image_topic,
                                            QoSProfile(depth=10, reliability=reliability))
        self.log = PlayLog()
        self._lock = threading.Lock()
        self.odometry = self.create_publisher(Odometry, cfg.topic('odom'),
                                              QoSProfile(depth=ODOM_DEPTH))
        self.create_subscription(PointCloud2, cfg.topic('~/ranked_candidates'), self._on_ranked,
                                 OUTPUT_DEPTH)
        self.create_subscription(PoseWithCovarianceStamped, cfg.topic('~/place_match'),
                                 self._on_place_match, OUTPUT_DEPTH)
        self.origin_received = threading.Event()
        self.create_subscription(TransformStamped, cfg.topic(ORIGIN_TOPIC), self._on_origin,
                                 ORIGIN_QOS)

    def _on_origin(self, msg: TransformStamped) -> None:
        """Keep the UTM of the node's map-frame origin (utm_frame -> map_frame translation)."""
        translation = msg.transform.translation
        with self._lock:
            self.log.origin_utm = (translation.x, translation.y)
        self.origin_received.set()

    def _on_ranked(self, msg: PointCloud2) -> None:
        """Keep one answer under its image stamp: arrival order does not matter."""
        received_s = time.monotonic()
        stamp_ns = stamps.stamp_ns(msg)
        try:
            points = messages.ranked_candidates(msg)
        except ValueError as err:
            self.get_logger().warning(f'stamp {stamp_ns}: {err}; answer ignored')
            return
        output = NodeOutput(stamp_ns, np.stack([points['x'], points['y']], axis=1),
                            points['yaw'].astype(np.float64), points['score'].copy(),
                            received_s, points['map_row'].astype(np.int64))
        with self._lock:
            self.log.outputs[stamp_ns] = output

    def _on_place_match(self, msg: PoseWithCovarianceStamped) -> None:
        """Keep the published estimate under its image stamp."""
        if stamps.stamp_ns(msg) == WARMUP_STAMP_NS:
            return                  # the readiness probe's
        pose = msg.pose.pose
        output = NodeOutput(stamps.stamp_ns(msg), np.array([[pose.position.x, pose.position.y]]),
                            np.array([quaternion_yaw(pose.orientation)]),
                            np.array([np.nan], np.float32), time.monotonic())
        with self._lock:
            self.log.estimates[output.stamp_ns] = output

    def estimate_count(self) -> int:
        """Estimates (``~/place_match``) received so far."""
        with self._lock:
            return len(self.log.estimates)

    def answered(self, stamp_ns: int) -> bool:
        """Whether the node's answer for this stamp has arrived."""
        with self._lock:
            return stamp_ns in self.log.outputs

    def answer_count(self) -> int:
        """Answers received so far."""
        with self._lock:
            return len(self.log.outputs)

    def forget(self, stamp_ns: int) -> None:
        """Drop an answer (the readiness probe's)."""
        with self._lock:
            self.log.outputs.pop(stamp_ns, None)

    def publish(self, msg: BagMessage, stamp_ns: int | None = None) -> int:
        """Publish one bag image (optionally restamped); returns the stamp it carries."""
        stamp_ns = msg.stamp_ns if stamp_ns is None else stamp_ns
        self.images.publish(to_ros_image(msg.msg, stamp_ns))
        return stamp_ns

    def publish_odometry(self, msg: BagMessage) -> None:
        """Publish one bag odometry or pose message as nav_msgs/Odometry on ``<ns>/odom``."""
        self.odometry.publish(to_ros_odometry(msg.msg, msg.stamp_ns))


def to_ros_image(msg: Any, stamp_ns: int) -> Image | CompressedImage:
    """Copy a rosbags Image/CompressedImage into the rclpy message, header stamp ``stamp_ns``."""
    sec, nanosec = stamps.sec_nanosec(stamp_ns)
    header = Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=msg.header.frame_id)
    data = np.asarray(msg.data, np.uint8).tobytes()
    if hasattr(msg, 'format'):
        return CompressedImage(header=header, format=msg.format, data=data)
    return Image(header=header, height=msg.height, width=msg.width, encoding=msg.encoding,
                 is_bigendian=msg.is_bigendian, step=msg.step, data=data)


def to_ros_odometry(msg: Any, stamp_ns: int) -> Odometry:
    """Copy a rosbags Odometry, PoseStamped or PoseWithCovarianceStamped's pose into Odometry."""
    pose = msg.pose.pose if hasattr(msg.pose, 'pose') else msg.pose
    sec, nanosec = stamps.sec_nanosec(stamp_ns)
    out = Odometry(header=Header(stamp=Time(sec=sec, nanosec=nanosec),
                                 frame_id=msg.header.frame_id),
                   child_frame_id=getattr(msg, 'child_frame_id', ''))
    p, q = pose.position, pose.orientation
    out.pose.pose = Pose(position=Point(x=float(p.x), y=float(p.y), z=float(p.z)),
                         orientation=Quaternion(x=float(q.x), y=float(q.y), z=float(q.z),
                                                w=float(q.w)))
    return out


def play_bag(images: Iterable[BagMessage], total: int, cfg: PlayConfig, compressed: bool,
             node: NodeProcess | None = None, odometry_topic: str = '',
             estimates: bool = False) -> PlayLog:
    """Publish the images to the node in real time x ``cfg.rate`` and collect the answers.

    Args:
        images: the bag's image messages in bag order (``bag_queries.play_messages``), and the
            ``odometry_topic``'s messages among them.
        total: how many images there are (for the progress bar).
        cfg: rate, namespace, timeouts.
        compressed: publish on image/compressed (CompressedImage) instead of image.
        node: a spawned node to watch (its death ends the replay with its log); None when
            talking to a node that is already running.
        odometry_topic: the bag topic whose messages go to ``<ns>/odom`` ('' : none).
        estimates: wait for each answer's ``~/place_match`` too at the end (the filter's
            estimate), within ``cfg.settle_s``.

    Raises:
        VprError: the node never answers the readiness probe, or it exits.
    """
    # a private context: works beside any other rclpy use in the same process
    context = Context()
    rclpy.init(context=context)
    player = BagPlayer(cfg, compressed, context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(player)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        stream = iter(images)
        before: list[BagMessage] = []       # odometry ahead of the first image
        first = next(stream, None)
        while first is not None and odometry_topic and first.topic == odometry_topic:
            before.append(first)
            first = next(stream, None)
        if first is None:
            return player.log
        _wait_ready(player, first, cfg, node, bool(odometry_topic), estimates)
        _publish_all(player, itertools.chain(before, [first], stream), total, cfg, node,
                     odometry_topic)
        _settle(player, cfg, estimates)
        return player.log
    finally:
        executor.shutdown()
        player.destroy_node()
        rclpy.try_shutdown(context=context)
        spinner.join(timeout=5)


def _wait_ready(player: BagPlayer, first: BagMessage, cfg: PlayConfig,
                node: NodeProcess | None, odometry: bool, estimates: bool) -> None:
    """Probe with the first image, restamped, until the node answers (model loaded, warm)."""
    deadline = time.monotonic() + cfg.startup_timeout_s
    log.info('waiting for %s to answer on %s', cfg.topic(''), cfg.topic('~/ranked_candidates'))
    # with estimates to record, ~/place_match's publisher must be known too, or the first are lost
    while not (player.answered(WARMUP_STAMP_NS) and player.origin_received.is_set()) or (
            estimates and not player.count_publishers(cfg.topic('~/place_match'))):
        if node is not None:
            node.check_alive()
        if time.monotonic() > deadline:
            raise VprError(
                f'no answer from the node on {cfg.topic("~/ranked_candidates")} within '
                f'{cfg.startup_timeout_s:.0f} s of publishing on {player.image_topic} (or no '
                f'{cfg.topic(ORIGIN_TOPIC)}); is it running in namespace {cfg.namespace!r}, '
                'in localization mode, and active'
                + (f', subscribed to {cfg.topic("odom")}' if odometry else '') + '?'
                + (f' Its log ends with:\n{node.log_tail()}' if node is not None else ''))
        # with odometry to send, its subscriber must be there too, or the first samples are lost
        if (player.images.get_subscription_count() > 0 and not player.answered(WARMUP_STAMP_NS)
                and (not odometry or player.odometry.get_subscription_count() > 0)):
            player.publish(first, WARMUP_STAMP_NS)
        time.sleep(WARMUP_PERIOD_S)
    player.forget(WARMUP_STAMP_NS)


def _publish_all(player: BagPlayer, stream: Iterator[BagMessage], total: int, cfg: PlayConfig,
                 node: NodeProcess | None, odometry_topic: str) -> None:
    start_s = time.monotonic()
    msg: BagMessage | None = next(stream, None)
    first_log_ns = msg.log_ns if msg is not None else 0
    with progress_bar(total=total, desc=f'playing x{cfg.rate:g}', unit='img') as bar:
        while msg is not None:
            due_s = start_s + (msg.log_ns - first_log_ns) / 1e9 / cfg.rate
            wait_s = due_s - time.monotonic()
            if wait_s > 0:
                time.sleep(wait_s)
            if node is not None:
                node.check_alive()
            if odometry_topic and msg.topic == odometry_topic:
                player.publish_odometry(msg)
                msg = next(stream, None)
                continue
            if msg.stamp_ns in player.log.sent_s:
                log.warning('two images share stamp %d ns; only the later one is scored',
                            msg.stamp_ns)
            player.log.sent_s[msg.stamp_ns] = time.monotonic()
            player.publish(msg)
            bar.update()
            msg = next(stream, None)


def _settle(player: BagPlayer, cfg: PlayConfig, estimates: bool) -> None:
    """Wait for the last answers: until all arrived, or ``settle_s`` passed without news.

    With ``estimates``, an image's answer includes its ``~/place_match``; an image whose
    estimate the node's gate withheld (``filter.min_belief``) gets none, and only the quiet
    time ends the wait.
    """
    last_count, quiet_since = -1, time.monotonic()
    while time.monotonic() - quiet_since < cfg.settle_s:
        count = player.answer_count() + (player.estimate_count() if estimates else 0)
        if count >= len(player.log.sent_s) * (2 if estimates else 1):
            return
        if count != last_count:
            last_count, quiet_since = count, time.monotonic()
        time.sleep(0.05)
    log.info('%d of %d images answered (%d estimates), none more within %.1f s',
             player.answer_count(), len(player.log.sent_s), player.estimate_count(), cfg.settle_s)
