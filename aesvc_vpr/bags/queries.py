"""The query stream of a recording: which image messages get scored, and where each was taken.

Both replay modes read a bag the same way: a first pass collects the pose track and every image
stamp (so ground truth can be interpolated between poses on both sides of an image), and a second
pass streams the image messages themselves. Images without ground truth are counted, explained
and skipped here, once, for both modes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import logging
from typing import Iterator

import numpy as np

from aesvc_vpr.bags.groundtruth import (GroundTruth, interpolate_poses, PoseTrack,
                                        track_from_messages)
from aesvc_vpr.bags.reader import BagMessage, BagSet, IMAGE_TYPES, POSE_TYPES
from aesvc_vpr.bags.tf_track import parse_frames, TF_TYPES, track_from_tf
from aesvc_vpr.common.progress import progress_bar
from aesvc_vpr.config import ImageConfig
from aesvc_vpr.errors import BagError, ImageError
from aesvc_vpr.images.messages import message_to_rgb

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuerySource:
    """Which recording and topics to replay, and how strict the ground truth is."""

    bags: tuple[str, ...]
    image_topic: str = ''        # '' picks the only Image/CompressedImage topic
    pose_topic: str = ''         # '' picks the only Odometry/PoseStamped/... topic
    max_gap_s: float = 0.1       # poses bracketing an image may be at most this far apart
    utm_zone: str = ''           # zone NavSatFix fixes are projected into ('' first fix's)
    limit: int = 0               # replay only the first N images (0: all)
    pose_tf: str = ''            # 'PARENT:CHILD': ground truth from /tf + /tf_static instead

    def __post_init__(self) -> None:
        """Normalise the bag paths and refuse a non-positive gap or a negative limit."""
        object.__setattr__(self, 'bags', tuple(str(b) for b in self.bags))
        if self.pose_tf:
            parse_frames(self.pose_tf)
            if self.pose_topic:
                raise BagError('give a pose topic or --pose-tf, not both')
        if self.max_gap_s <= 0:
            raise BagError(f'max_gap_s must be > 0, got {self.max_gap_s}')
        if self.limit < 0:
            raise BagError(f'limit must be >= 0, got {self.limit}')


@dataclass(frozen=True)
class QueryPlan:
    """Every image message of the chosen topic (in bag order) with its ground truth."""

    image_topic: str
    image_type: str
    pose_topic: str
    pose_type: str
    track: PoseTrack
    truth: GroundTruth       # one row per image message, bag order

    @property
    def total(self) -> int:
        """Image messages read."""
        return len(self.truth.stamps_ns)

    @property
    def scored(self) -> int:
        """Images with ground truth (the ones that are localised and scored)."""
        return int(self.truth.valid.sum())


@dataclass
class FrameCounts:
    """How many images of a replay were usable, and why the others were not (by cause)."""

    usable: int = 0
    refused: dict[str, int] = field(default_factory=dict)     # cause -> count
    examples: dict[str, str] = field(default_factory=dict)    # cause -> first message

    @property
    def total(self) -> int:
        """Images looked at."""
        return self.usable + sum(self.refused.values())

    def refuse(self, err: ImageError) -> bool:
        """Count one refused image; True the first time its cause is seen."""
        first = err.cause not in self.refused
        self.refused[err.cause] = self.refused.get(err.cause, 0) + 1
        self.examples.setdefault(err.cause, str(err))
        return first

    def summary(self) -> str:
        """One line: counts by cause with the first message of each, most frequent first."""
        parts = [f'{n} {cause} (first: {self.examples[cause]})'
                 for cause, n in sorted(self.refused.items(), key=lambda kv: -kv[1])]
        return '; '.join(parts)


def plan_queries(bags: BagSet, source: QuerySource) -> QueryPlan:
    """First pass: choose the topics, build the pose track and ground truth at image stamps.

    Raises:
        BagError: a topic is missing or ambiguous, there are no images, or no image has ground
            truth (the message gives both time ranges, which usually shows a clock mismatch).
    """
    image = bags.select_topic(source.image_topic, IMAGE_TYPES, 'image')
    if source.pose_tf:
        poses = _tf_topics(bags)
        parent, child = parse_frames(source.pose_tf)
        pose_name, pose_type = f'tf:{parent}->{child}', poses[0].msgtype
    else:
        poses = [bags.select_topic(source.pose_topic, POSE_TYPES, 'pose')]
        pose_name, pose_type = poses[0].name, poses[0].msgtype
    pose_topics = {t.name for t in poses}
    stamps: list[int] = []
    pose_msgs: list[BagMessage] = []
    wanted = image.count if not source.limit else min(source.limit, image.count)
    bar = progress_bar(total=image.count + sum(t.count for t in poses), desc='reading bag',
                       unit='msg', leave=False)
    with bar:
        for msg in bags.messages([image.name, *sorted(pose_topics)]):
            bar.update()
            if msg.topic in pose_topics:
                pose_msgs.append(msg)
            elif len(stamps) < wanted:
                stamps.append(msg.stamp_ns)
    if not stamps:
        raise BagError(f'image topic {image.name} has no messages')
    if source.pose_tf:
        track = track_from_tf(pose_msgs, parent, child, source.max_gap_s)
    else:
        track = track_from_messages(pose_msgs, source.utm_zone)
    truth = interpolate_poses(track, np.asarray(stamps, np.int64), source.max_gap_s)
    plan = QueryPlan(image.name, image.msgtype, pose_name, pose_type, track, truth)
    _report_skipped(plan, source.max_gap_s)
    return plan


def _tf_topics(bags: BagSet) -> list:
    """Return the TF topics of the recording (/tf and /tf_static, or namespaced ones)."""
    found = [t for t in bags.topics.values() if t.msgtype in TF_TYPES]
    if not found:
        raise BagError(f'--pose-tf needs /tf or /tf_static ({TF_TYPES[0]}); topics there:\n'
                       f'{bags.describe_topics()}')
    return found


def query_messages(bags: BagSet, plan: QueryPlan) -> Iterator[tuple[int, BagMessage]]:
    """Second pass: (row in plan.truth, image message) for every image, in bag order.

    The caller decides what to do with rows without ground truth (mode 1 skips them; mode 2
    still publishes them, as the robot would, and does not score them).
    """
    for row, msg in enumerate(bags.messages([plan.image_topic])):
        if row >= plan.total:
            return
        yield row, msg


def play_messages(bags: BagSet, plan: QueryPlan, poses: bool = False) -> Iterator[BagMessage]:
    """Yield the plan's images in bag order and, with ``poses``, its pose messages among them.

    What bag-play sends to the node: the images, and the robot's odometry beside them when the
    sequence filter should hear it. Stops after the plan's last image.

    Raises:
        BagError: ``poses`` with ground truth from /tf or NavSatFix (no pose to forward).
    """
    if poses and (plan.pose_topic.startswith('tf:') or plan.pose_type.endswith('NavSatFix')):
        raise BagError(f'ground truth from {plan.pose_topic} ({plan.pose_type}) cannot be played '
                       'as odometry; give an Odometry or pose topic')
    topics = [plan.image_topic, plan.pose_topic] if poses else [plan.image_topic]
    images = 0
    for msg in bags.messages(topics):
        yield msg
        if msg.topic == plan.image_topic:
            images += 1
            if images >= plan.total:
                return


def scored_images(bags: BagSet, plan: QueryPlan, images: ImageConfig | None = None,
                  counts: FrameCounts | None = None
                  ) -> Iterator[tuple[int, BagMessage, np.ndarray]]:
    """Yield the images with ground truth, decoded: (row in plan.truth, message, RGB).

    An image the decode policy (``images``) refuses is counted by cause in ``counts`` and
    skipped, so it stays unanswered (a miss), as the node counts it as a bad frame. The first
    image of each cause is logged; the caller prints the summary.
    """
    cfg = images or ImageConfig()
    counts = counts if counts is not None else FrameCounts()
    for row, msg in query_messages(bags, plan):
        if not plan.truth.valid[row]:
            continue
        try:
            rgb = message_to_rgb(msg.msg, cfg.max_pixels, cfg.min_pixels)
        except ImageError as err:
            if counts.refuse(err):
                log.warning('%s images skipped (%s), first at stamp %d ns: %s; the rest are '
                            'counted', plan.image_topic, err.cause, msg.stamp_ns, err)
            continue
        counts.usable += 1
        yield row, msg, rgb


def _report_skipped(plan: QueryPlan, max_gap_s: float) -> None:
    skipped = plan.truth.skipped
    if not skipped:
        log.info('%d images, all with ground truth from %s', plan.total, plan.pose_topic)
        return
    stamps, track = plan.truth.stamps_ns[~plan.truth.valid], plan.track.stamps_ns
    before = int((stamps < track[0]).sum())
    after = int((stamps > track[-1]).sum())
    detail = (f'{before} before the first pose, {after} after the last, '
              f'{skipped - before - after} in gaps longer than {max_gap_s} s')
    if skipped == plan.total:
        raise BagError(
            f'none of the {plan.total} images on {plan.image_topic} has ground truth from '
            f'{plan.pose_topic} ({detail}); image stamps span {_span(plan.truth.stamps_ns)}, '
            f'poses span {_span(track)}: check that both topics use the same clock, or raise '
            '--max-gap-s')
    log.warning('%d of %d images have no ground truth within %s s and are skipped (%s)',
                skipped, plan.total, max_gap_s, detail)


def _span(stamps_ns: np.ndarray) -> str:
    return f'{stamps_ns.min() / 1e9:.3f}..{stamps_ns.max() / 1e9:.3f} s'
