"""Reading an MCAP file whose end is missing: the usual state of a recording after a crash.

A recorder that dies never writes the MCAP footer and summary, and rosbags refuses such a file
("File end magic is invalid"). MCAP is written as a stream of self-describing records, so the
``mcap`` package's stream reader can walk it from the start without the footer. This module reads
every record up to the damage (a cut-off chunk, a bad CRC), says how much was read and lost, and
offers the subset of rosbags ``AnyReader``'s interface that ``BagSet`` uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import logging
from pathlib import Path
from typing import Any, Iterator, Sequence

from mcap.records import Channel, Message, Schema
from mcap.stream_reader import StreamReader
from rosbags.typesys import get_types_from_idl, get_types_from_msg, get_typestore, Stores
from rosbags.typesys.store import Typestore

from aesvc_vpr.errors import BagError

log = logging.getLogger(__name__)


@dataclass
class RecoveredConnection:
    """One channel of the file: what ``AnyReader.connections`` lists."""

    channel_id: int
    topic: str
    msgtype: str
    msgcount: int = 0


@dataclass
class RecoveredTopic:
    """One topic: what ``AnyReader.topics`` maps a name to."""

    msgtype: str
    msgcount: int = 0
    connections: list[RecoveredConnection] = field(default_factory=list)


class RecoveredMcap:
    """The readable part of a damaged MCAP file, with the reading interface of ``AnyReader``."""

    def __init__(self, path: Path, default: Typestore) -> None:
        """Walk the file once: channels, types and messages up to the first damage.

        Raises:
            BagError: not even the start of an MCAP file, or no message before the damage.
        """
        self.paths = [path]
        self.typestore = get_typestore(Stores.EMPTY)     # a store of its own: never the shared one
        self.typestore.register(default.fielddefs)
        self.connections: list[RecoveredConnection] = []
        self.start_time = 0
        self.end_time = 0
        self.message_count = 0
        self.damage = ''
        self._channels: dict[int, RecoveredConnection] = {}
        self._schemas: dict[int, Schema] = {}
        self._read_bytes = 0
        for _ in self._records(collect=True):
            pass
        size = path.stat().st_size
        if not self.message_count:
            raise BagError(f'{path}: no message could be read before the damage '
                           f'({self.damage or "no data"}); the recording is lost')
        log.warning('%s: damaged MCAP (%s); read %d messages up to bag time %d ns, %d of %d '
                    'bytes; the %d bytes after that are lost', path, self.damage or 'no footer',
                    self.message_count, self.end_time, self._read_bytes, size,
                    size - self._read_bytes)

    @property
    def topics(self) -> dict[str, RecoveredTopic]:
        """Topic name -> message type, count and connections."""
        out: dict[str, RecoveredTopic] = {}
        for connection in self.connections:
            topic = out.setdefault(connection.topic, RecoveredTopic(connection.msgtype))
            topic.msgcount += connection.msgcount
            topic.connections.append(connection)
        return out

    def messages(self, connections: Sequence[RecoveredConnection] = ()
                 ) -> Iterator[tuple[RecoveredConnection, int, bytes]]:
        """Yield (connection, log time ns, CDR bytes) of the chosen connections, in file order."""
        wanted = {c.channel_id for c in connections} if connections else set(self._channels)
        for record in self._records(collect=False):
            if record.channel_id in wanted:
                yield self._channels[record.channel_id], record.log_time, record.data

    def deserialize(self, raw: bytes, msgtype: str) -> Any:
        """Decode one CDR message."""
        return self.typestore.deserialize_cdr(raw, msgtype)

    def close(self) -> None:
        """Nothing stays open between reads."""

    def _records(self, collect: bool) -> Iterator[Message]:
        """Yield the messages of the file up to the first damage (recorded on the first walk)."""
        path = self.paths[0]
        count = 0
        with open(path, 'rb') as f:
            try:
                for record in StreamReader(f, validate_crcs=True).records:
                    if isinstance(record, Message):
                        if record.channel_id not in self._channels:
                            continue
                        count += 1
                        if collect:
                            self._count(record)
                            self._read_bytes = f.tell()
                        elif count > self.message_count:
                            return
                        yield record
                    elif collect and isinstance(record, Schema):
                        self._schemas[record.id] = record
                    elif collect and isinstance(record, Channel):
                        self._add_channel(record)
            # a cut-off record, a bad CRC or garbage all end the readable part
            except Exception as err:  # noqa: BLE001
                if collect:
                    self.damage = f'{type(err).__name__}: {err}'.rstrip(': ')

    def _count(self, record: Message) -> None:
        self._channels[record.channel_id].msgcount += 1
        self.message_count += 1
        if self.message_count == 1:
            self.start_time = record.log_time
        self.end_time = max(self.end_time, record.log_time)

    def _add_channel(self, channel: Channel) -> None:
        schema = self._schemas.get(channel.schema_id)
        if schema is None or channel.message_encoding != 'cdr':
            log.warning('%s: channel %s (%s encoding) has no ROS 2 schema; skipped',
                        self.paths[0], channel.topic, channel.message_encoding)
            return
        self._register(schema)
        connection = RecoveredConnection(channel.id, channel.topic, schema.name)
        self._channels[channel.id] = connection
        self.connections.append(connection)

    def _register(self, schema: Schema) -> None:
        """Add the types a schema defines, so custom messages decode too."""
        if schema.name in self.typestore.fielddefs:
            return
        text = schema.data.decode(errors='replace')
        try:
            if schema.encoding == 'ros2msg':
                types = get_types_from_msg(text, schema.name)
            else:
                types = get_types_from_idl(text)
            self.typestore.register(types)
        except Exception as err:  # noqa: BLE001 - unreadable schema: the topic stays unknown
            log.warning('%s: schema %s cannot be parsed (%s)', self.paths[0], schema.name, err)
