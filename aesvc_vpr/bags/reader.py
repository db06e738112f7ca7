"""Reading recordings as users have them: ROS 1 ``.bag``, rosbag2 sqlite3 and MCAP, one or several.

Every bag is opened with its own rosbags ``AnyReader``, so ROS 1 and rosbag2 files can be mixed,
and their messages are merged in bag (receive) time order. Type definitions embedded in a bag
(always in ROS 1, in rosbag2 from Iron on) are used, so bags with custom message types open; a
rosbag2 without definitions falls back to the ROS 2 Kilted standard types. Only the topics asked
for are deserialised. Every reader failure becomes a BagError that names the file.

Recordings as a crash leaves them open too: a bare ``.mcap`` or ``.db3`` file, or a rosbag2
folder without ``metadata.yaml``, is read from its storage files (MCAP and the sqlite3 tables
describe themselves, as ``ros2 bag reindex`` knows), and an MCAP file cut off before its footer
is read up to the damage (``mcap_recovery``), with a warning that says how much was lost.
"""

from __future__ import annotations

from dataclasses import dataclass
import heapq
import logging
from pathlib import Path
from typing import Iterator, Sequence

from rosbags.highlevel import AnyReader
from rosbags.typesys import get_typestore, Stores
from rosbags.typesys.store import Typestore

from aesvc_vpr.bags.mcap_recovery import RecoveredMcap
from aesvc_vpr.common.stamps import stamp_ns
from aesvc_vpr.errors import BagError

log = logging.getLogger(__name__)

IMAGE_TYPES = ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage')
POSE_TYPES = (
    'nav_msgs/msg/Odometry',
    'geometry_msgs/msg/PoseStamped',
    'geometry_msgs/msg/PoseWithCovarianceStamped',
    'sensor_msgs/msg/NavSatFix',
)
ROSBAG2_SUFFIXES = ('.mcap', '.db3')


@dataclass(frozen=True)
class TopicSummary:
    """One topic over all opened bags."""

    name: str
    msgtype: str
    count: int


@dataclass(frozen=True)
class BagMessage:
    """One deserialised message.

    ``stamp_ns`` is the header stamp (what the camera or GNSS said), falling back to ``log_ns``
    (when the recorder received it) for messages without a header or with a zero stamp.
    """

    topic: str
    msgtype: str
    log_ns: int
    stamp_ns: int
    msg: object
    bag: Path


def resolve_bag_paths(path: str | Path) -> list[Path]:
    """Turn what a user typed into the paths rosbags reads.

    A rosbag2 is its directory (with metadata.yaml); a ``.mcap`` or ``.db3`` file inside such a
    directory stands for the directory. Without metadata.yaml, the storage files themselves are
    read (a bare file, or every ``.mcap``/``.db3`` file of the folder). A ROS 1 bag is its
    ``.bag`` file.

    Raises:
        BagError: the path does not exist or is not a bag.
    """
    bag = Path(path)
    if not bag.exists():
        raise BagError(f'{bag}: no such bag file or directory')
    if bag.is_file() and bag.suffix in ROSBAG2_SUFFIXES:
        return [bag.parent if (bag.parent / 'metadata.yaml').is_file() else bag]
    if bag.is_dir() and not (bag / 'metadata.yaml').is_file():
        storage = sorted(p for p in bag.iterdir() if p.suffix in ROSBAG2_SUFFIXES)
        if not storage:
            raise BagError(f'{bag}: a directory without metadata.yaml or .mcap/.db3 files is not '
                           'a rosbag2; pass the bag directory (rosbag2) or the .bag file (ROS 1)')
        log.info('%s: no metadata.yaml; reading its storage files %s', bag,
                 ', '.join(p.name for p in storage))
        return storage
    if bag.is_file() and bag.suffix != '.bag':
        raise BagError(f'{bag}: not a bag (expected a .bag file, a rosbag2 directory, '
                       'or a .mcap/.db3 file)')
    return [bag]


class BagSet:
    """One or several bags opened together; use as a context manager."""

    def __init__(self, paths: Sequence[str | Path]) -> None:
        """Check the paths; the bags are opened on ``__enter__``.

        Args:
            paths: bag files or rosbag2 directories (see ``resolve_bag_paths``).

        Raises:
            BagError: a path is missing or not a bag; on ``__enter__``, a bag that is empty,
                truncated or corrupt (the message names it).
        """
        if not paths:
            raise BagError('no bag given')
        self.paths = [p for path in paths for p in resolve_bag_paths(path)]
        self._readers: list[AnyReader | RecoveredMcap] = []

    def __enter__(self) -> BagSet:
        """Open every bag (all or none)."""
        try:
            for path in self.paths:
                self._readers.append(_open_reader(path))
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the readers."""
        self.close()

    def close(self) -> None:
        """Close every open reader."""
        while self._readers:
            self._readers.pop().close()

    @property
    def topics(self) -> dict[str, TopicSummary]:
        """Topic name -> summary (type and message count summed over the bags), sorted by name."""
        types: dict[str, set[str]] = {}
        counts: dict[str, int] = {}
        for reader in self._readers:
            for name, info in reader.topics.items():
                types.setdefault(name, set()).update(c.msgtype for c in info.connections)
                counts[name] = counts.get(name, 0) + info.msgcount
        return {name: TopicSummary(name, '|'.join(sorted(types[name])), counts[name])
                for name in sorted(types)}

    def describe_topics(self) -> str:
        """Format the topics as an aligned table (for error messages and ``--list-topics``)."""
        rows = list(self.topics.values())
        name_w = max((len(t.name) for t in rows), default=0)
        type_w = max((len(t.msgtype) for t in rows), default=0)
        return '\n'.join(f'  {t.name:<{name_w}}  {t.msgtype:<{type_w}}  {t.count:>7} msgs'
                         for t in rows)

    def select_topic(self, name: str | None, allowed: Sequence[str], role: str) -> TopicSummary:
        """Check a topic the user named, or pick the only topic of an allowed type.

        Args:
            name: topic name, or None / '' to choose automatically.
            allowed: acceptable message types ('sensor_msgs/msg/Image', ...).
            role: what it is for ('image', 'pose'), used in messages.

        Raises:
            BagError: the topic is absent, of another type, or the choice is ambiguous; the
                message lists the topics that exist with their types and counts.
        """
        topics = self.topics
        where = ', '.join(str(p) for p in self.paths)
        if name:
            topic = topics.get(name)
            if topic is None:
                raise BagError(f'{role} topic {name!r} is not in {where}; topics there:\n'
                               f'{self.describe_topics()}')
            if topic.msgtype not in allowed:
                raise BagError(f'{role} topic {name!r} in {where} has type {topic.msgtype}; '
                               f'expected one of {", ".join(allowed)}')
            return topic
        fits = [t for t in topics.values() if t.msgtype in allowed]
        if len(fits) != 1:
            found = 'no' if not fits else 'several'
            raise BagError(f'{found} {role} topics of type {" or ".join(allowed)} in {where}; '
                           f'name one with --{role}-topic. Topics there:\n'
                           f'{self.describe_topics()}')
        log.info('using %s topic %s (%s, %d msgs)', role, fits[0].name, fits[0].msgtype,
                 fits[0].count)
        return fits[0]

    def messages(self, topics: Sequence[str]) -> Iterator[BagMessage]:
        """Deserialised messages of the given topics, all bags merged in bag time order.

        Raises:
            BagError: a bag turns out corrupt or truncated while it is read.
        """
        streams = [self._read(reader, set(topics)) for reader in self._readers]
        yield from heapq.merge(*streams, key=lambda m: m.log_ns)

    def _read(self, reader: AnyReader | RecoveredMcap, topics: set[str]) -> Iterator[BagMessage]:
        path = Path(reader.paths[0])
        connections = [c for c in reader.connections if c.topic in topics]
        if not connections:
            return
        log_ns = reader.start_time
        expected = sum(c.msgcount for c in connections)
        count = 0
        try:
            for connection, log_ns, raw in reader.messages(connections=connections):
                msg = reader.deserialize(raw, connection.msgtype)
                count += 1
                stamp = stamp_ns(msg) if hasattr(msg, 'header') else 0
                yield BagMessage(connection.topic, connection.msgtype, log_ns, stamp or log_ns,
                                 msg, path)
        # Damaged files fail in many ways (sqlite, MCAP records, ROS 1 chunks, CDR); any of
        # them means the same to a user: the bag is corrupt from here on.
        except Exception as err:  # noqa: BLE001
            raise BagError(
                f'{path}: corrupt or truncated data after bag time {log_ns} ns '
                f'({type(err).__name__}: {err}); re-record, or repair it with `ros2 bag reindex` '
                '(rosbag2) or `rosbag reindex` (ROS 1)') from err
        # a damaged MCAP chunk can end the stream early without an error: compare with the index
        if count != expected:
            raise BagError(
                f'{path}: its index lists {expected} messages on {", ".join(sorted(topics))} but '
                f'only {count} could be read (corrupt data after bag time {log_ns} ns); re-record '
                'it, or try `mcap recover` / `ros2 bag reindex`')


def _open_reader(path: Path) -> AnyReader | RecoveredMcap:
    is_ros2 = path.suffix != '.bag'
    default = get_typestore(Stores.ROS2_KILTED if is_ros2 else Stores.ROS1_NOETIC)
    reader = AnyReader([path], default_typestore=default)
    try:
        reader.open()
    # random bytes fail in rosbags' parsers in many ways (UnicodeDecodeError, struct.error,
    # KeyError, ...); each means the same to a user: not a readable bag
    except Exception as err:  # noqa: BLE001
        mcap = _mcap_file(path)
        if mcap is None:
            raise BagError(f'{path}: cannot open the bag, it is truncated, corrupt or not a bag '
                           f'({type(err).__name__}: {err})') from err
        log.warning('%s: rosbags cannot open it (%s); reading it record by record', path, err)
        return RecoveredMcap(mcap, default)
    _add_missing_types(reader, default)
    if reader.message_count == 0:
        reader.close()
        raise BagError(f'{path}: the bag is empty (no messages)')
    return reader


def _mcap_file(path: Path) -> Path | None:
    """Return the one MCAP file of a bag path, None for other storage."""
    if path.suffix == '.mcap':
        return path
    files = sorted(path.glob('*.mcap')) if path.is_dir() else []
    return files[0] if len(files) == 1 else None


def _add_missing_types(reader: AnyReader, default: Typestore) -> None:
    """Register standard types for connections that came without an embedded definition.

    AnyReader uses the embedded definitions only when a bag has some; a bag that mixes topics with
    and without them would otherwise fail on the latter.
    """
    have = reader.typestore.fielddefs
    if {c.msgtype for c in reader.connections} <= set(have):
        return
    reader.typestore.register({t: d for t, d in default.fielddefs.items() if t not in have})
