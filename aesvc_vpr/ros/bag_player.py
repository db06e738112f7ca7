"""Mode 2, ROS half: publish a bag's images to the live node and record what it answers.

Images go out at bag time (their receive-time spacing) divided by the rate, with their header
stamps unchanged, on ``<ns>/image`` or ``<ns>/image/compressed``. The node's answer is its
``~/ranked_candidates`` (PointCloud2: positions, yaw, score and map row of each candidate),
keyed by its header stamp, so answers that finish out of order (``workers`` > 1) still land on
their own image. The node's latched ``~/map_origin`` says where its map frame lies in UTM; it
is waited for with the first answer and kept, so positions can be turned back into the map's
UTM (``replay.live.frames_from_outputs``).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Iterable, Iterator

from builtin_interfaces.msg import Time
from geometry_msgs.msg import TransformStamped
import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image, PointCloud2
from std_msgs.msg import Header

from aesvc_vpr.bags.reader import BagMessage
from aesvc_vpr.common import stamps
from aesvc_vpr.common.progress import progress_bar
from aesvc_vpr.errors import VprError
from aesvc_vpr.replay.live import NodeOutput, NodeProcess, PlayConfig, PlayLog
from aesvc_vpr.ros import messages

log = logging.getLogger(__name__)

OUTPUT_DEPTH = 100
WARMUP_STAMP_NS = 1          # a stamp no real image has: the readiness probe's answer is ignored
WARMUP_PERIOD_S = 1.0


class BagPlayer(Node):
    """Publishes images to the node and collects its answers by stamp."""

    def __init__(self, cfg: PlayConfig, compressed: bool, context: Context) -> None:
        """Create the image publisher and the ranked-candidates subscription in ``context``."""
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
        self.create_subscription(PointCloud2, cfg.topic('~/ranked_candidates'), self._on_ranked,
                                 OUTPUT_DEPTH)
        self.origin_received = threading.Event()
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.create_subscription(TransformStamped, cfg.topic('~/map_origin'), self._on_origin,
                                 latched)

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


def to_ros_image(msg: Any, stamp_ns: int) -> Image | CompressedImage:
    """Copy a rosbags Image/CompressedImage into the rclpy message, header stamp ``stamp_ns``."""
    sec, nanosec = stamps.sec_nanosec(stamp_ns)
    header = Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=msg.header.frame_id)
    data = np.asarray(msg.data, np.uint8).tobytes()
    if hasattr(msg, 'format'):
        return CompressedImage(header=header, format=msg.format, data=data)
    return Image(header=header, height=msg.height, width=msg.width, encoding=msg.encoding,
                 is_bigendian=msg.is_bigendian, step=msg.step, data=data)


def play_bag(images: Iterable[BagMessage], total: int, cfg: PlayConfig, compressed: bool,
             node: NodeProcess | None = None) -> PlayLog:
    """Publish the images to the node in real time x ``cfg.rate`` and collect the answers.

    Args:
        images: the bag's image messages in bag order (``bag_queries.query_messages``).
        total: how many there are (for the progress bar).
        cfg: rate, namespace, timeouts.
        compressed: publish on image/compressed (CompressedImage) instead of image.
        node: a spawned node to watch (its death ends the replay with its log); None when
            talking to a node that is already running.

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
        first = next(stream, None)
        if first is None:
            return player.log
        _wait_ready(player, first, cfg, node)
        _publish_all(player, first, stream, total, cfg, node)
        _settle(player, cfg)
        return player.log
    finally:
        executor.shutdown()
        player.destroy_node()
        rclpy.try_shutdown(context=context)
        spinner.join(timeout=5)


def _wait_ready(player: BagPlayer, first: BagMessage, cfg: PlayConfig,
                node: NodeProcess | None) -> None:
    """Probe with the first image, restamped, until the node answers (model loaded, warm)."""
    deadline = time.monotonic() + cfg.startup_timeout_s
    log.info('waiting for %s to answer on %s', cfg.topic(''), cfg.topic('~/ranked_candidates'))
    while not (player.answered(WARMUP_STAMP_NS) and player.origin_received.is_set()):
        if node is not None:
            node.check_alive()
        if time.monotonic() > deadline:
            raise VprError(
                f'no answer from the node on {cfg.topic("~/ranked_candidates")} within '
                f'{cfg.startup_timeout_s:.0f} s of publishing on {player.image_topic} (or no '
                f'{cfg.topic("~/map_origin")}); is it running in namespace {cfg.namespace!r}, '
                'in localization mode, and active?'
                + (f' Its log ends with:\n{node.log_tail()}' if node is not None else ''))
        if player.images.get_subscription_count() > 0 and not player.answered(WARMUP_STAMP_NS):
            player.publish(first, WARMUP_STAMP_NS)
        time.sleep(WARMUP_PERIOD_S)
    player.forget(WARMUP_STAMP_NS)


def _publish_all(player: BagPlayer, first: BagMessage, stream: Iterator[BagMessage], total: int,
                 cfg: PlayConfig, node: NodeProcess | None) -> None:
    start_s = time.monotonic()
    first_log_ns = first.log_ns
    msg: BagMessage | None = first
    with progress_bar(total=total, desc=f'playing x{cfg.rate:g}', unit='img') as bar:
        while msg is not None:
            due_s = start_s + (msg.log_ns - first_log_ns) / 1e9 / cfg.rate
            wait_s = due_s - time.monotonic()
            if wait_s > 0:
                time.sleep(wait_s)
            if node is not None:
                node.check_alive()
            if msg.stamp_ns in player.log.sent_s:
                log.warning('two images share stamp %d ns; only the later one is scored',
                            msg.stamp_ns)
            player.log.sent_s[msg.stamp_ns] = time.monotonic()
            player.publish(msg)
            bar.update()
            msg = next(stream, None)


def _settle(player: BagPlayer, cfg: PlayConfig) -> None:
    """Wait for the last answers: until all arrived, or ``settle_s`` passed without news."""
    last_count, quiet_since = -1, time.monotonic()
    while time.monotonic() - quiet_since < cfg.settle_s:
        count = player.answer_count()
        if count >= len(player.log.sent_s):
            return
        if count != last_count:
            last_count, quiet_since = count, time.monotonic()
        time.sleep(0.05)
    log.info('%d of %d images answered, none more within %.1f s', last_count,
             len(player.log.sent_s), cfg.settle_s)
