"""The hub, its connections and messages: the C API, Pythonic.

A :class:`Hub` owns a native ``cbx_hub``. :meth:`Hub.open` gives a
:class:`Connection` (one per client socket the host owns); connections join
groups, and :meth:`Hub.group_send` puts one :class:`Message` in the queue of
every member. Receivers take messages with :meth:`Connection.recv` (blocking),
:meth:`Connection.recv_batch` (no wait) or, in asyncio,
``await conn.recv_async()`` and ``async for message in conn``; every
connection of a hub is served by one reader on the hub's readiness fd per
event loop (see :mod:`channelbox._aio`).
"""

from __future__ import annotations

import base64
import collections
import ctypes
import enum
import json
import threading
from ctypes import byref, c_size_t, c_uint32, c_uint64, c_void_p
from dataclasses import dataclass
from typing import Any, Deque, Dict, List, Optional, Tuple, Union, cast, overload

from . import _aio, _ffi
from ._ffi import lib
from .errors import (
    ConnectionClosed,
    HubClosed,
    InvalidArgument,
    InvalidJson,
    InvalidUtf8,
    check,
    error_for,
)

__all__ = ["Hub", "Connection", "Message", "Kind", "CloseReason", "SendReport", "HistoryPage", "Payload"]

#: What a send accepts: bytes-like (binary), str (text) or anything JSON-serialisable.
Payload = Any

_I32_MAX = 2**31 - 1
_U32_MAX = 2**32 - 1
_U64_MAX = 2**64 - 1
_BATCH = 256


class Kind(enum.IntEnum):
    """A payload's kind: how the hub checks it and how a server frames it."""

    #: Valid JSON, sent as a text frame.
    JSON = _ffi.CBX_JSON
    #: Valid UTF-8, sent as a text frame.
    TEXT = _ffi.CBX_TEXT
    #: Arbitrary bytes, sent as a binary frame.
    BINARY = _ffi.CBX_BINARY

    @classmethod
    def parse(cls, kind: Union["Kind", str, int]) -> "Kind":
        """``Kind.JSON``, ``"json"`` or ``1`` -> ``Kind.JSON`` (``"bytes"`` is ``BINARY``)."""
        if isinstance(kind, Kind):
            return kind
        if isinstance(kind, str):
            name = kind.lower()
            if name == "bytes":
                return cls.BINARY
            try:
                return cls[name.upper()]
            except KeyError:
                raise InvalidArgument(f"unknown kind {kind!r} (expected 'json', 'text' or 'binary')") from None
        if isinstance(kind, int) and not isinstance(kind, bool):
            try:
                return cls(kind)
            except ValueError:
                raise InvalidArgument(f"unknown kind {kind} (expected 1, 2 or 3)") from None
        raise TypeError(f"kind must be a Kind, str or int, not {type(kind).__name__}")

    def __str__(self) -> str:
        return self.name.lower()


class CloseReason(enum.IntEnum):
    """Why a connection was closed: C's ``CBX_CLOSE_*`` codes.

    :attr:`Connection.close_reason` and :attr:`ConnectionClosed.close_reason
    <channelbox.ConnectionClosed.close_reason>` give it (``None`` while the
    connection is open); ``close_detail`` gives the hub's text for people,
    e.g. ``"slow consumer: outbound queue full (5 messages, 10 bytes)"``.
    """

    #: The host released it (:meth:`Connection.close`).
    CLOSED_BY_HOST = _ffi.CBX_CLOSE_CLOSED_BY_HOST
    #: The host disconnected it with a code of its own (a Rust host's ``Hub::disconnect``).
    HOST = _ffi.CBX_CLOSE_HOST
    #: Its queue was full under the ``disconnect`` slow-consumer policy.
    SLOW_CONSUMER = _ffi.CBX_CLOSE_SLOW_CONSUMER
    #: Its time to live (``ttl``) ran out.
    EXPIRED = _ffi.CBX_CLOSE_EXPIRED
    #: :meth:`Hub.close_all` (or :meth:`Hub.close`) closed it.
    HUB_CLOSED = _ffi.CBX_CLOSE_HUB_CLOSED
    #: The shared engine lost its subscription: the client should reconnect and recover by offset.
    ENGINE_LOST_SUBSCRIPTION = _ffi.CBX_CLOSE_ENGINE_LOST_SUBSCRIPTION
    #: The shared engine saw messages go missing: the client should reconnect and recover by offset.
    ENGINE_MISSED_MESSAGES = _ffi.CBX_CLOSE_ENGINE_MISSED_MESSAGES

    def __str__(self) -> str:
        return self.name.lower()


_CLOSED_BY_HOST_DETAIL = "closed by the host"


def _close_reason(code: int) -> Optional[CloseReason]:
    if code == _ffi.CBX_CLOSE_NONE:
        return None
    try:
        return CloseReason(code)
    except ValueError:  # newer than this package (the version check rules it out)
        return cast(CloseReason, code)


_KINDS = {1: Kind.JSON, 2: Kind.TEXT, 3: Kind.BINARY}
_KINDS_BY_NAME = {"json": Kind.JSON, "text": Kind.TEXT, "binary": Kind.BINARY}
_UNSET: Any = object()


class Message:
    """One received message (or one history entry).

    ``data`` is the payload decoded by kind: the JSON value (dict, list, ...)
    for ``Kind.JSON``, ``str`` for ``Kind.TEXT``, ``bytes`` for ``Kind.BINARY``;
    ``raw`` is the payload as the hub holds it (the frame a server would send).
    ``group`` is ``None`` for direct and user sends; ``offset`` is the history
    offset (0 when not saved); ``ts_ms`` is when the hub accepted it (ms since
    the Unix epoch).
    """

    __slots__ = ("kind", "group", "offset", "ts_ms", "_raw", "_data")

    def __init__(
        self,
        kind: Kind,
        raw: Optional[bytes],
        group: Optional[str] = None,
        offset: int = 0,
        ts_ms: int = 0,
        data: Any = _UNSET,
    ) -> None:
        self.kind = kind
        self.group = group
        self.offset = offset
        self.ts_ms = ts_ms
        self._raw = raw
        self._data = data

    @property
    def data(self) -> Any:
        """The payload decoded by kind (decoded on first access)."""
        if self._data is _UNSET:
            raw = self._raw or b""
            if self.kind is Kind.JSON:
                self._data = json.loads(raw)
            elif self.kind is Kind.TEXT:
                self._data = raw.decode("utf-8")
            else:
                self._data = raw
        return self._data

    @property
    def raw(self) -> bytes:
        """The payload bytes (UTF-8 JSON text for ``Kind.JSON``)."""
        if self._raw is None:
            data = self._data
            if self.kind is Kind.JSON:
                self._raw = _dumps(data).encode("utf-8")
            elif self.kind is Kind.TEXT:
                self._raw = data.encode("utf-8")
            else:
                self._raw = bytes(data)
        return self._raw

    @property
    def text(self) -> str:
        """The payload as text (the frame's text for JSON and text messages)."""
        return self.raw.decode("utf-8")

    def __repr__(self) -> str:
        return (
            f"Message(kind={self.kind!s}, group={self.group!r}, offset={self.offset}, "
            f"ts_ms={self.ts_ms}, data={self.data!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (self.kind, self.group, self.offset, self.ts_ms, self.data) == (
            other.kind,
            other.group,
            other.offset,
            other.ts_ms,
            other.data,
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class SendReport:
    """What a send did."""

    #: Receivers whose queue took the message.
    delivered: int
    #: Messages refused or evicted by full queues.
    dropped: int
    #: The message's history offset, 0 when it was not saved.
    offset: int
    #: Receivers closed by this send for being too slow.
    disconnected: int


@dataclass(frozen=True)
class HistoryPage:
    """Part of one group's history, oldest first."""

    #: The group's name.
    group: str
    #: Changes whenever the group's history is flushed or lost.
    epoch: int
    #: Offset of the oldest message still kept (0 when none is).
    first_offset: int
    #: Offset of the newest message ever saved (0 when none was).
    last_offset: int
    #: The messages asked for, oldest first.
    messages: List[Message]


def _dumps(value: Any) -> str:
    # Byte for byte what Starlette's and Nexios' WebSocket.send_json sends.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _utf8(value: str, what: str) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if "\0" in value:
        raise InvalidArgument(f"{what} contains a NUL character")
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidUtf8(f"{what} is not valid UTF-8: {error}") from None


def encode_payload(payload: Payload, kind: Union[Kind, str, int, None] = None) -> Tuple[Kind, bytes]:
    """Turns a payload into ``(kind, bytes)`` the way every send does.

    Without ``kind``: bytes-like is binary, ``str`` is text, anything else is
    JSON-encoded. With ``kind=JSON``, ``str``/bytes are taken as JSON text
    already encoded (the hub checks it parses) and other values are encoded.
    """
    if kind is None:
        if isinstance(payload, (bytes, bytearray, memoryview)):
            return Kind.BINARY, bytes(payload)
        if isinstance(payload, str):
            return Kind.TEXT, _text_bytes(payload)
        return Kind.JSON, _json_bytes(payload)
    kind = Kind.parse(kind)
    if kind is Kind.JSON:
        if isinstance(payload, (bytes, bytearray, memoryview)):
            return kind, bytes(payload)
        if isinstance(payload, str):
            return kind, _text_bytes(payload)
        return kind, _json_bytes(payload)
    if kind is Kind.TEXT:
        if isinstance(payload, str):
            return kind, _text_bytes(payload)
        if isinstance(payload, (bytes, bytearray, memoryview)):
            return kind, bytes(payload)  # the hub checks it is UTF-8
        raise TypeError(f"a text payload must be str or bytes, not {type(payload).__name__}")
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return kind, bytes(payload)
    raise TypeError(f"a binary payload must be bytes-like, not {type(payload).__name__}")


def _text_bytes(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidUtf8(f"text payload is not valid UTF-8: {error}") from None


def _json_bytes(value: Any) -> bytes:
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError as error:  # NaN / Infinity: not JSON
        raise InvalidJson(f"payload is not valid JSON: {error}") from None
    return _text_bytes(text)


def _conn_id(conn: Union["Connection", int]) -> int:
    if isinstance(conn, Connection):
        return conn.id
    if isinstance(conn, int) and not isinstance(conn, bool):
        if not 0 <= conn <= _U64_MAX:
            raise InvalidArgument(f"connection id {conn} is out of range")
        return conn
    raise TypeError(f"conn must be a Connection or an int id, not {type(conn).__name__}")


def _take_string(out: c_void_p) -> str:
    try:
        return ctypes.string_at(out.value or 0).decode("utf-8") if out.value else ""
    finally:
        lib.cbx_string_free(out)


def _history_message(group: str, entry: Dict[str, Any]) -> Message:
    kind = _KINDS_BY_NAME[entry["kind"]]
    payload = entry["payload"]
    if kind is Kind.BINARY:
        payload = base64.b64decode(payload)
        return Message(kind, payload, group, entry["offset"], entry["ts_ms"], payload)
    if kind is Kind.TEXT:
        return Message(kind, None, group, entry["offset"], entry["ts_ms"], payload)
    return Message(kind, None, group, entry["offset"], entry["ts_ms"], payload)


def _history_page(page: Dict[str, Any]) -> HistoryPage:
    group = page["group"]
    return HistoryPage(
        group=group,
        epoch=int(page["epoch"]),
        first_offset=page["first_offset"],
        last_offset=page["last_offset"],
        messages=[_history_message(group, m) for m in page["messages"]],
    )


class _NativeHub:
    """The native ``cbx_hub`` pointer, guarded so that no call outlives it.

    Every native call is made inside ``with native as ptr:``. Entering raises
    :class:`~channelbox.HubClosed` once the hub is closing and otherwise
    counts the call as in flight; :meth:`close` frees the hub at once when no
    call is in flight, or else the last call to leave frees it. So a thread
    closing the hub never frees it under another thread's call (a blocked
    :meth:`Connection.recv` included: closing wakes it first).

    One object per hub, entered by any number of threads at once: the state
    is the in-flight count, not the ``with`` block.
    """

    __slots__ = ("_ptr", "_lock", "_busy", "closing")

    def __init__(self, ptr: int) -> None:
        self._ptr: Optional[int] = ptr
        self._lock = threading.Lock()
        self._busy = 0
        #: True once :meth:`close` was called; no native call starts after it.
        self.closing = False

    def __enter__(self) -> int:
        with self._lock:
            if self.closing:
                raise HubClosed("the hub is closed")
            self._busy += 1
            return self._ptr  # type: ignore[return-value]

    def __exit__(self, *exc_info: Any) -> None:
        with self._lock:
            self._busy -= 1
            if self._busy == 0 and self.closing:
                self._free_locked()

    def close(self) -> bool:
        """Closes every connection (waking blocked receivers) and frees the hub
        once no call is in flight. False when it was already closing."""
        with self._lock:
            if self.closing:
                return False
            self.closing = True
            if self._ptr is not None:
                lib.cbx_close_all(self._ptr)  # wakes blocked receivers
            if self._busy == 0:
                self._free_locked()
            return True

    def _free_locked(self) -> None:
        ptr, self._ptr = self._ptr, None
        if ptr is not None:
            lib.cbx_hub_free(ptr)


class Hub:
    """A channelbox hub: groups, fan-out, bounded history, presence.

    ``Hub(**config)`` takes the hub's settings as keywords (all optional):
    ``history_max_messages``, ``history_max_bytes``, ``history_ttl_seconds``,
    ``queue_max_messages``, ``queue_max_bytes``, ``slow_consumer``
    (``"disconnect"``, ``"drop_oldest"``, ``"drop_newest"``),
    ``max_payload_bytes``, ``max_group_name_bytes``, ``max_user_bytes``,
    ``history_dir`` (a directory: history is kept on disk there and comes
    back on the next start; a saved send returns once it is durable; a store
    that cannot be opened raises :class:`~channelbox.StorageError`) and
    ``history_fsync`` (default ``True``; ``False`` leaves writing to the OS:
    faster, a process crash still loses nothing, a power loss may lose what the
    OS had not written back yet, on Linux up to about 30 s by default), ``history_commit_interval_ms`` (how long
    changes gather before one commit, 0 to 1000, default 0). An unknown key raises
    :class:`~channelbox.InvalidArgument`.

    Close it with :meth:`close` or use it as a context manager. Every method
    may be called from any thread; after :meth:`close` they raise
    :class:`~channelbox.HubClosed`.
    """

    def __init__(self, **config: Any) -> None:
        self._native: Optional[_NativeHub] = None
        try:
            text = json.dumps(config, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise TypeError(f"hub settings must be JSON values: {error}") from None
        ptr = c_void_p()
        check(lib.cbx_hub_new(text.encode("utf-8"), byref(ptr)))
        #: Every native call goes through it: ``with self._native as ptr: ...``.
        self._native = _NativeHub(ptr.value)
        self._aio = _aio.Readiness(self)
        # Group names seen in received messages, decoded once.
        self._group_names: Dict[bytes, Optional[str]] = {}

    # ----- lifecycle -----------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._native is None or self._native.closing

    def close(self) -> None:
        """Closes every connection and frees the hub. Idempotent.

        Threads blocked in :meth:`Connection.recv` return (with
        :class:`~channelbox.ConnectionClosed`) and async receivers wake up
        with :class:`~channelbox.HubClosed`; the native hub is freed once no
        call is in flight.
        """
        native = self._native
        if native is not None and native.close():
            self._aio.close()

    def __enter__(self) -> "Hub":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"<channelbox.Hub {'closed' if self.closed else 'open'}>"

    # ----- connections ---------------------------------------------------

    def open(self, user: Optional[str] = None, ttl: Optional[float] = None) -> "Connection":
        """Opens a connection, optionally carrying a user id and a TTL in seconds.

        The user id is for presence (:meth:`groups`) and :meth:`user_send`;
        after ``ttl`` seconds (rounded up to whole seconds) the hub closes the
        connection (it drains, then :class:`~channelbox.ConnectionClosed`).
        """
        user_bytes = None if user is None else _utf8(user, "user")
        ttl_seconds = 0
        if ttl is not None:
            if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
                raise TypeError(f"ttl must be a number of seconds, not {type(ttl).__name__}")
            if not ttl > 0:
                raise InvalidArgument(f"ttl must be positive, got {ttl}")
            ttl_seconds = min(max(1, int(-(-ttl // 1))), _U32_MAX)
        out = c_uint64()
        with self._native as ptr:
            check(lib.cbx_conn_open(ptr, user_bytes, ttl_seconds, byref(out)))
        return Connection(self, out.value, user)

    def connection_close(self, conn: Union["Connection", int]) -> None:
        """Closes and releases a connection by id (see :meth:`Connection.close`)."""
        if isinstance(conn, Connection):
            conn.close()
            return
        cid = _conn_id(conn)
        with self._native as ptr:
            check(lib.cbx_conn_close(ptr, cid))
        self._aio.wake(cid)

    # ----- groups --------------------------------------------------------

    def group_add(self, conn: Union["Connection", int], group: str) -> None:
        """Adds a connection to a group (created on first use). Idempotent."""
        cid = _conn_id(conn)
        name = _utf8(group, "group")
        with self._native as ptr:
            check(lib.cbx_group_add(ptr, cid, name))

    def group_remove(self, conn: Union["Connection", int], group: str) -> None:
        """Removes a connection from a group; removing a non-member changes nothing."""
        cid = _conn_id(conn)
        name = _utf8(group, "group")
        with self._native as ptr:
            check(lib.cbx_group_remove(ptr, cid, name))

    def group_send(
        self,
        group: str,
        payload: Payload,
        kind: Union[Kind, str, int, None] = None,
        save_history: bool = False,
    ) -> SendReport:
        """Sends a payload to every member of a group; optionally saves it to history.

        The payload is encoded once (see :func:`encode_payload`) and checked
        by the hub: invalid JSON or UTF-8 raises and nothing is delivered or
        saved. Never blocks on a receiver; full queues apply the hub's
        slow-consumer policy, which the :class:`SendReport` accounts for.
        """
        name = _utf8(group, "group")
        kind, data = encode_payload(payload, kind)
        report = _ffi.cbx_send_report()
        with self._native as ptr:
            check(
                lib.cbx_group_send(
                    ptr, name, kind, data, len(data), _ffi.CBX_SAVE_HISTORY if save_history else 0, byref(report)
                )
            )
        return SendReport(report.delivered, report.dropped, report.offset, report.disconnected)

    def user_send(self, user: str, payload: Payload, kind: Union[Kind, str, int, None] = None) -> SendReport:
        """Sends a payload to every connection of ``user`` (not saved)."""
        name = _utf8(user, "user")
        kind, data = encode_payload(payload, kind)
        report = _ffi.cbx_send_report()
        with self._native as ptr:
            check(lib.cbx_user_send(ptr, name, kind, data, len(data), byref(report)))
        return SendReport(report.delivered, report.dropped, report.offset, report.disconnected)

    def conn_send(
        self, conn: Union["Connection", int], payload: Payload, kind: Union[Kind, str, int, None] = None
    ) -> None:
        """Sends a payload to one connection (not saved)."""
        cid = _conn_id(conn)
        kind, data = encode_payload(payload, kind)
        with self._native as ptr:
            check(lib.cbx_conn_send(ptr, cid, kind, data, len(data)))

    def groups(self) -> Dict[str, Dict[str, List[Any]]]:
        """Every group with members: ``{"chat_1": {"connections": [ids], "users": ["alice"]}}``.

        ``users`` is presence: distinct users, a user with three connections
        counted once.
        """
        return cast(Dict[str, Dict[str, List[Any]]], json.loads(self._json(lib.cbx_groups_json)))

    def stats(self) -> Dict[str, int]:
        """Counters and gauges: ``connections``, ``users``, ``groups``, ``deliveries``, ..."""
        return cast(Dict[str, int], json.loads(self._json(lib.cbx_stats_json)))

    def _json(self, function: Any) -> str:
        out = c_void_p()
        with self._native as ptr:
            check(function(ptr, byref(out)))
        return _take_string(out)

    # ----- history -------------------------------------------------------

    @overload
    def history(self, group: str, since: int = 0, limit: int = 50) -> HistoryPage: ...

    @overload
    def history(self, group: None = None, since: int = 0, limit: int = 50) -> Dict[str, HistoryPage]: ...

    def history(
        self, group: Optional[str] = None, since: int = 0, limit: int = 50
    ) -> Union[HistoryPage, Dict[str, HistoryPage]]:
        """Reads history: the newest ``limit`` messages (0 = all) after offset ``since``.

        With a group, a :class:`HistoryPage` (an unknown group reads as
        empty); without, ``{group: HistoryPage}`` for every group with history.
        """
        raw = self.history_json(group, since, limit)
        if group is None:
            return {name: _history_page(page) for name, page in raw.items()}
        return _history_page(raw)

    def history_json(self, group: Optional[str] = None, since: int = 0, limit: int = 50) -> Dict[str, Any]:
        """:meth:`history` as the hub's JSON shape, parsed (payloads not turned into messages)."""
        name = None if group is None else _utf8(group, "group")
        for what, value, top in (("since", since, _U64_MAX), ("limit", limit, _U32_MAX)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{what} must be an int, not {type(value).__name__}")
            if not 0 <= value <= top:
                raise InvalidArgument(f"{what} must be between 0 and {top}, got {value}")
        out = c_void_p()
        with self._native as ptr:
            check(lib.cbx_history_json(ptr, name, since, limit, byref(out)))
        return cast(Dict[str, Any], json.loads(_take_string(out)))

    def history_replace(
        self, group: str, offset: int, payload: Payload, kind: Union[Kind, str, int, None] = None
    ) -> None:
        """Replaces the history entry at ``offset`` in place (an edit); nothing is delivered.

        Raises :class:`~channelbox.NoSuchMessage` when that offset is not kept.
        """
        name = _utf8(group, "group")
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise TypeError(f"offset must be an int, not {type(offset).__name__}")
        if not 0 <= offset <= _U64_MAX:
            raise InvalidArgument(f"offset {offset} is out of range")
        kind, data = encode_payload(payload, kind)
        with self._native as ptr:
            check(lib.cbx_history_replace(ptr, name, offset, kind, data, len(data)))

    def history_flush(self, group: Optional[str] = None) -> None:
        """Forgets one group's history (or every group's); its epoch changes."""
        name = None if group is None else _utf8(group, "group")
        with self._native as ptr:
            check(lib.cbx_history_flush(ptr, name))

    def groups_flush(self) -> None:
        """Empties every group; connections stay open and history is kept."""
        with self._native as ptr:
            check(lib.cbx_groups_flush(ptr))

    def close_all(self) -> None:
        """Closes every connection on the hub's side: receivers drain, then see it closed."""
        with self._native as ptr:
            check(lib.cbx_close_all(ptr))

    # ----- receiving (used by Connection) --------------------------------

    def _recv(self, cid: int, timeout_ms: int) -> Message:
        out = c_void_p()
        with self._native as ptr:
            rc = lib.cbx_conn_recv(ptr, cid, timeout_ms, byref(out))
            if rc:
                if rc == _ffi.CBX_CLOSED:
                    raise self._closed_error(ptr, cid)
                raise error_for(rc)
            m = out.value
            try:
                size = c_size_t()
                data = lib.cbx_message_data(m, byref(size))
                raw = ctypes.string_at(data, size.value) if size.value else b""
                group = lib.cbx_message_group(m)
                return Message(
                    _KINDS[lib.cbx_message_kind(m)],
                    raw,
                    group.decode("utf-8") if group else None,
                    lib.cbx_message_offset(m),
                    lib.cbx_message_ts_ms(m),
                )
            finally:
                lib.cbx_message_free(m)

    def _recv_batch(self, cid: int, cap: int) -> List[Message]:
        """Up to ``cap`` pending messages, ``[]`` when none; ConnectionClosed once drained."""
        slots = (c_void_p * cap)()
        n = c_size_t()
        with self._native as ptr:
            rc = lib.cbx_conn_recv_batch(ptr, cid, slots, cap, byref(n))
            if rc:
                if rc == _ffi.CBX_EMPTY:
                    return []
                if rc == _ffi.CBX_CLOSED:
                    raise self._closed_error(ptr, cid)
                raise error_for(rc)
            count = n.value
            try:
                views = (_ffi.cbx_message_view * count)()
                check(lib.cbx_message_views(slots, count, views))
                names = self._group_names
                char = ctypes.c_char
                out: List[Message] = []
                append = out.append
                for v in views:
                    raw_group = v.group  # bytes, b"" for direct sends
                    name = names.get(raw_group)
                    if name is None:
                        name = names[raw_group] = raw_group.decode("utf-8") if raw_group else None
                        if len(names) > 4096:
                            names.clear()
                    size = v.len
                    # (c_char * n).from_address(...).raw copies the payload in one step,
                    # about twice as fast as ctypes.string_at's foreign call.
                    raw = (char * size).from_address(v.data).raw if size else b""
                    append(Message(_KINDS[v.kind], raw, name, v.offset, v.ts_ms))
                return out
            finally:
                lib.cbx_messages_free(slots, count)

    def _closed_error(self, ptr: int, cid: int) -> ConnectionClosed:
        """The ConnectionClosed for ``cid``, saying why (called inside a native call)."""
        reason: Optional[CloseReason] = None
        detail = ""
        code, host_code, text = c_uint32(), c_uint32(), c_void_p()
        if lib.cbx_conn_close_reason(ptr, cid, byref(code), byref(host_code), byref(text)) == _ffi.CBX_OK:
            reason, detail = _close_reason(code.value), _take_string(text)
        return ConnectionClosed(
            f"connection {cid} is closed ({detail or 'closed'})", _ffi.CBX_CLOSED, detail, reason
        )

    def _close_reason(self, cid: int) -> Tuple[Optional[CloseReason], str]:
        code, host_code, text = c_uint32(), c_uint32(), c_void_p()
        with self._native as ptr:
            check(lib.cbx_conn_close_reason(ptr, cid, byref(code), byref(host_code), byref(text)))
        return _close_reason(code.value), _take_string(text)


class Connection:
    """One client socket's connection to the hub: its groups and its outbound queue.

    Receive with :meth:`recv` (blocking), :meth:`recv_batch` / :meth:`try_recv`
    (no wait), or in asyncio with ``await conn.recv_async()`` and
    ``async for message in conn`` (which ends when the connection is closed
    and drained). Release it with :meth:`close` (or ``with``); a connection
    closed by the hub (slow consumer, TTL, :meth:`Hub.close_all`) must still
    be closed by the host. The object owns the connection: when it is garbage
    collected unreleased, the connection is closed.
    """

    __slots__ = ("hub", "id", "user", "_buffer", "_released", "__weakref__")

    def __init__(self, hub: Hub, conn_id: int, user: Optional[str] = None) -> None:
        #: The hub it belongs to.
        self.hub = hub
        #: Its id (never reused within the hub).
        self.id = conn_id
        #: The user it carries, if any.
        self.user = user
        self._buffer: Deque[Message] = collections.deque()
        self._released = False

    def __repr__(self) -> str:
        state = " released" if self._released else ""
        return f"<channelbox.Connection id={self.id} user={self.user!r}{state}>"

    def _check(self) -> None:
        if self._released:
            raise ConnectionClosed(
                f"connection {self.id} was closed by the host",
                _ffi.CBX_CLOSED,
                _CLOSED_BY_HOST_DETAIL,
                CloseReason.CLOSED_BY_HOST,
            )

    def join(self, group: str) -> None:
        """Joins a group (:meth:`Hub.group_add`)."""
        self._check()
        self.hub.group_add(self.id, group)

    def leave(self, group: str) -> None:
        """Leaves a group (:meth:`Hub.group_remove`)."""
        self._check()
        self.hub.group_remove(self.id, group)

    def send(self, payload: Payload, kind: Union[Kind, str, int, None] = None) -> None:
        """Puts a payload in this connection's own queue (a direct send, not saved)."""
        self._check()
        self.hub.conn_send(self.id, payload, kind)

    @property
    def close_reason(self) -> Optional[CloseReason]:
        """Why it was closed (``None`` while it is open); see :attr:`close_detail`."""
        if self._released:
            return CloseReason.CLOSED_BY_HOST
        return self.hub._close_reason(self.id)[0]

    @property
    def close_detail(self) -> Optional[str]:
        """The hub's text saying why it was closed, for people (``None`` while it is open)."""
        if self._released:
            return _CLOSED_BY_HOST_DETAIL
        reason, detail = self.hub._close_reason(self.id)
        return None if reason is None else detail

    def recv(self, timeout: Optional[float] = None) -> Message:
        """Waits up to ``timeout`` seconds (``None``: forever) for one message.

        Raises :class:`~channelbox.Empty` (a ``TimeoutError``) when nothing
        came in time and :class:`~channelbox.ConnectionClosed` once the
        connection is closed and drained. Releases the GIL while it waits.
        """
        self._check()
        if self._buffer:
            return self._buffer.popleft()
        if timeout is None:
            timeout_ms = -1
        else:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
                raise TypeError(f"timeout must be a number of seconds, not {type(timeout).__name__}")
            if timeout < 0:
                raise InvalidArgument(f"timeout must not be negative, got {timeout}")
            timeout_ms = min(int(timeout * 1000), _I32_MAX)
        return self.hub._recv(self.id, timeout_ms)

    def try_recv(self) -> Optional[Message]:
        """One pending message, or ``None`` when none is pending. Never waits."""
        self._check()
        if not self._buffer:
            self._buffer.extend(self.hub._recv_batch(self.id, _BATCH))
            if not self._buffer:
                return None
        return self._buffer.popleft()

    def recv_batch(self, max_messages: int = _BATCH) -> List[Message]:
        """Up to ``max_messages`` pending messages (``[]`` when none). Never waits.

        Raises :class:`~channelbox.ConnectionClosed` once closed and drained.
        """
        self._check()
        if isinstance(max_messages, bool) or not isinstance(max_messages, int):
            raise TypeError(f"max_messages must be an int, not {type(max_messages).__name__}")
        if max_messages <= 0:
            raise InvalidArgument(f"max_messages must be positive, got {max_messages}")
        out: List[Message] = []
        while self._buffer and len(out) < max_messages:
            out.append(self._buffer.popleft())
        if len(out) < max_messages:
            out.extend(self.hub._recv_batch(self.id, max_messages - len(out)))
        return out

    async def recv_async(self) -> Message:
        """Waits, in asyncio, for one message.

        Driven by the hub's readiness fd (one reader per hub and event loop,
        no thread, no polling). Raises :class:`~channelbox.ConnectionClosed`
        once the connection is closed and drained.
        """
        self._check()
        if self._buffer:
            return self._buffer.popleft()
        readiness = self.hub._aio
        loop = readiness.attach()  # before the first drain, so no wake-up is missed
        while True:
            self._check()
            if self._buffer:
                return self._buffer.popleft()
            batch = self.hub._recv_batch(self.id, _BATCH)
            if batch:
                self._buffer.extend(batch)
                return self._buffer.popleft()
            # Seen empty: the next message lists this connection on the ready fd.
            await readiness.wait(self.id, loop)

    def __aiter__(self) -> "Connection":
        return self

    async def __anext__(self) -> Message:
        try:
            return await self.recv_async()
        except ConnectionClosed:
            raise StopAsyncIteration from None

    def close(self) -> None:
        """Closes and releases the connection: it leaves every group, pending
        messages are dropped, async receivers wake with
        :class:`~channelbox.ConnectionClosed`. Idempotent."""
        if self._released:
            return
        self._released = True
        self._buffer.clear()
        hub = self.hub
        if hub.closed:
            return
        try:
            with hub._native as ptr:
                rc = lib.cbx_conn_close(ptr, self.id)
                if rc not in (_ffi.CBX_OK, _ffi.CBX_NO_SUCH_CONNECTION):
                    raise error_for(rc)
        finally:
            hub._aio.wake(self.id)

    @property
    def closed(self) -> bool:
        """True once the host released it with :meth:`close`."""
        return self._released

    def __del__(self) -> None:
        # The object owns the connection: a forgotten one is released, not leaked.
        try:
            if not self._released and not self.hub.closed:
                self.close()
        except Exception:
            pass

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
