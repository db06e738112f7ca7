"""Ground truth from TF: the pose of one frame in another, chained over ``/tf`` and ``/tf_static``.

Mocap systems and SLAM runs often publish the robot's pose only as a transform (``map`` ->
``base_link``), possibly through intermediate frames (``map`` -> ``odom`` -> ``base_link``). Here
the transforms of a recording become one pose track of CHILD in PARENT: the TF tree is built from
every transform seen, the chain between the two frames goes up to their common ancestor and
down again, and at each stamp of a moving link every moving link of the chain is interpolated
(translation linearly, rotation by slerp) between the two samples around it, at most
``max_gap_s`` apart. Static transforms hold at all times. Stamps where some moving link has no
such pair are left out (counted as rejected), never extrapolated.
"""

from __future__ import annotations

from dataclasses import dataclass
import logging
import math
from typing import Iterable

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from aesvc_vpr.bags.groundtruth import PoseMessage, PoseTrack
from aesvc_vpr.common.stamps import time_ns
from aesvc_vpr.errors import BagError

log = logging.getLogger(__name__)

TF_TYPES = ('tf2_msgs/msg/TFMessage', 'tf/msg/tfMessage')    # and old ROS 1 bags' type


@dataclass
class _Link:
    """Samples of one parent -> child transform, sorted by stamp."""

    parent: str
    child: str
    static: bool
    stamps_ns: list[int]
    translations: list[tuple[float, float, float]]
    rotations: list[tuple[float, float, float, float]]    # x, y, z, w


def parse_frames(spec: str) -> tuple[str, str]:
    """Split ``PARENT:CHILD`` (evo's ``tf:PARENT.CHILD`` form is accepted too).

    Raises:
        BagError: not two non-empty frame names.
    """
    text = spec[3:] if spec.startswith('tf:') else spec
    sep = ':' if ':' in text else '.'
    parent, _, child = text.partition(sep)
    if not parent.strip('/') or not child.strip('/'):
        raise BagError(f'--pose-tf {spec!r}: expected PARENT:CHILD, e.g. map:base_link')
    return _frame(parent), _frame(child)


def track_from_tf(messages: Iterable[PoseMessage], parent: str, child: str,
                  max_gap_s: float = 0.1) -> PoseTrack:
    """Build the track of ``child`` in ``parent`` from TFMessage messages of /tf and /tf_static.

    Args:
        messages: TFMessage messages; a topic whose name ends in ``tf_static`` is static.
        parent, child: frame ids (a leading '/' of ROS 1 is ignored).
        max_gap_s: moving links are interpolated only between samples this close in time.

    Raises:
        BagError: a frame is not in the TF tree, the two are not connected, or no stamp has
            every moving link of the chain.
    """
    links = _links(messages)
    up_child, up_parent = _to_root(child, links), _to_root(parent, links)
    common = next((f for f in up_child if f in up_parent), None)
    if common is None:
        frames = sorted({f for link in links.values() for f in (link.parent, link.child)})
        raise BagError(f'TF: frames {parent!r} and {child!r} are not connected in the '
                       f'recording; frames seen: {frames}')
    down_child = [links[f] for f in up_child[:up_child.index(common)]][::-1]
    down_parent = [links[f] for f in up_parent[:up_parent.index(common)]][::-1]
    chain = down_parent + down_child
    moving = [link for link in chain if not link.static]
    if not moving:
        raise BagError(f'TF: {parent} -> {child} is static; it gives no track to follow')
    stamps = np.unique(np.concatenate([np.asarray(link.stamps_ns, np.int64)
                                       for link in moving]))
    valid = np.ones(len(stamps), bool)
    poses = {}
    for link in chain:
        poses[id(link)], ok = _at(link, stamps, max_gap_s)
        valid &= ok
    if not valid.any():
        raise BagError(f'TF: no stamp where every moving link of {parent} -> {child} has '
                       f'samples within {max_gap_s} s ({", ".join(_name(m) for m in moving)})')
    # T_parent_child = inv(T_common_parent) @ T_common_child
    t_common_parent = _compose([poses[id(link)] for link in down_parent], len(stamps))
    t_common_child = _compose([poses[id(link)] for link in down_child], len(stamps))
    matrices = np.linalg.inv(t_common_parent) @ t_common_child
    matrices = matrices[valid]
    yaw = np.arctan2(matrices[:, 1, 0], matrices[:, 0, 0])
    rejected = int((~valid).sum())
    log.info('TF track %s -> %s: %d poses over %s%s', parent, child, int(valid.sum()),
             ' -> '.join([parent, *[_name(link) for link in chain], child]),
             f', {rejected} stamps without every link' if rejected else '')
    return PoseTrack(stamps[valid], matrices[:, :2, 3].copy(), yaw, parent, '', rejected)


def _links(messages: Iterable[PoseMessage]) -> dict[str, _Link]:
    """Child frame -> its link, with samples sorted and de-duplicated by stamp."""
    links: dict[str, _Link] = {}
    for message in messages:
        static = message.topic.rstrip('/').endswith('tf_static')
        for tf in message.msg.transforms:     # type: ignore[attr-defined]
            parent, child = _frame(tf.header.frame_id), _frame(tf.child_frame_id)
            link = links.setdefault(child, _Link(parent, child, static, [], [], []))
            if link.parent != parent:
                raise BagError(f'TF: frame {child!r} has two parents, {link.parent!r} and '
                               f'{parent!r}; a TF tree has one')
            t, q = tf.transform.translation, tf.transform.rotation
            values = (float(t.x), float(t.y), float(t.z), float(q.x), float(q.y), float(q.z),
                      float(q.w))
            if not all(math.isfinite(v) for v in values) or not any(values[3:]):
                continue
            link.stamps_ns.append(time_ns(tf.header.stamp))
            link.translations.append(values[:3])
            link.rotations.append(values[3:])
    if not links:
        raise BagError('TF: the recording has no transforms on /tf or /tf_static')
    for link in links.values():
        order = np.argsort(np.asarray(link.stamps_ns, np.int64), kind='stable')
        stamps = np.asarray(link.stamps_ns, np.int64)[order]
        keep = np.concatenate([[True], np.diff(stamps) > 0])
        link.stamps_ns = stamps[keep].tolist()
        link.translations = [link.translations[i] for i in order[keep]]
        link.rotations = [link.rotations[i] for i in order[keep]]
    return links


def _to_root(frame: str, links: dict[str, _Link]) -> list[str]:
    """Return the frame and its ancestors, up to the root of its tree."""
    if frame not in links and all(link.parent != frame for link in links.values()):
        frames = sorted({f for link in links.values() for f in (link.parent, link.child)})
        raise BagError(f'TF: frame {frame!r} is not in the recording; frames seen: {frames}')
    path = [frame]
    while path[-1] in links:
        path.append(links[path[-1]].parent)
        if len(path) > len(links) + 1:
            raise BagError(f'TF: the transforms above {frame!r} form a cycle')
    return path


def _at(link: _Link, stamps: np.ndarray, max_gap_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(M, 4, 4) transforms of a link at ``stamps`` and (M,) where they are valid."""
    count = len(stamps)
    rotations = Rotation.from_quat(np.asarray(link.rotations))
    translations = np.asarray(link.translations, np.float64)
    out = np.tile(np.eye(4), (count, 1, 1))
    if link.static:
        # the newest static transform holds (latched /tf_static may be re-sent)
        out[:, :3, :3] = rotations[-1].as_matrix()
        out[:, :3, 3] = translations[-1]
        return out, np.ones(count, bool)
    t = np.asarray(link.stamps_ns, np.int64)
    hi = np.searchsorted(t, stamps, side='left')
    exact = (hi < len(t)) & (t[np.minimum(hi, len(t) - 1)] == stamps)
    lo = np.clip(hi - 1, 0, len(t) - 1)
    hi = np.minimum(hi, len(t) - 1)
    gap = t[hi] - t[lo]             # int64 first: float64 cannot hold absolute ns exactly
    valid = exact | ((stamps > t[0]) & (stamps < t[-1]) & (gap <= round(max_gap_s * 1e9)))
    lo = np.where(exact, hi, lo)
    frac = np.where(exact | (gap == 0), 0.0, (stamps - t[lo]) / np.maximum(gap, 1))
    frac = np.clip(frac, 0.0, 1.0)
    out[:, :3, 3] = translations[lo] + frac[:, None] * (translations[hi] - translations[lo])
    if len(t) > 1:
        seconds = (t - t[0]) / 1e9
        query = np.clip((stamps - t[0]) / 1e9, 0.0, seconds[-1])
        out[:, :3, :3] = Slerp(seconds, rotations)(query).as_matrix()
    else:
        out[:, :3, :3] = rotations[0].as_matrix()
    return out, valid


def _compose(transforms: list[np.ndarray], count: int) -> np.ndarray:
    """Chain (M, 4, 4) transforms from the common ancestor down; identity for an empty chain."""
    out = np.tile(np.eye(4), (count, 1, 1))
    for matrix in transforms:
        out = out @ matrix
    return out


def _frame(name: str) -> str:
    return str(name).strip().lstrip('/')


def _name(link: _Link) -> str:
    return f'{link.parent}->{link.child}{" (static)" if link.static else ""}'
