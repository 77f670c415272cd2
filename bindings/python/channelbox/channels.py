"""A drop-in for ``nexios.websockets.channels`` (Nexios 3.x), on the channelbox hub.

Same names, signatures, return values and shapes as Nexios' module:
:class:`ChannelBox` (async classmethods over class-level state),
:class:`Channel`, the status enums, :class:`ChannelMessageDC` and the history
managers. Replace ``from nexios.websockets.channels import ChannelBox, Channel``
(or ``from nexios.websockets import ...``) with ``from channelbox import ...``.

What changes (see the package README for the full list):

- History lives in a native :class:`channelbox.Hub`: bounded per group by
  bytes (``CHANNEL_BOX_HISTORY_SIZE``), and optionally by count and age,
  evicting the oldest messages instead of wiping the group. Every entry keeps
  its own ``uuid``, ``created`` time and ``offset``.
- A socket that raises or blocks never stops or delays delivery to the others:
  sends start in order, a send that would block finishes in its own task with
  a timeout (``SEND_TIMEOUT``), later messages to that socket queue behind it
  (at most ``MAX_PENDING``), and a socket that fails or times out is removed
  from its groups.
- A JSON payload is encoded once per ``group_send``; Nexios/Starlette
  ``WebSocket`` objects get the encoded text frame through their public ASGI
  ``send`` (the same message ``send_json`` would pass it). Any object with
  ``send_json``/``send_text``/``send_bytes`` is accepted.
- Joining or leaving during a broadcast, and sweeping expired channels, are safe.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import typing
import uuid
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from types import CoroutineType

from .errors import ChannelboxError
from .hub import HistoryPage, Hub, Kind, _dumps

__all__ = [
    "Channel",
    "ChannelBox",
    "ChannelAddStatusEnum",
    "ChannelRemoveStatusEnum",
    "GroupSendStatusEnum",
    "PayloadTypeEnum",
    "ChannelMessageDC",
    "BaseHistoryManager",
    "InMemoryHistoryManager",
    "NoOpHistoryManager",
]

logger = logging.getLogger("channelbox")


# ----------------------------------------------------------------- Nexios' enums


class ChannelAddStatusEnum(Enum):
    CHANNEL_ADDED = "CHANNEL_ADDED"
    CHANNEL_EXIST = "CHANNEL_EXIST"


class ChannelRemoveStatusEnum(Enum):
    CHANNEL_REMOVED = "CHANNEL_REMOVED"
    CHANNEL_DOES_NOT_EXIST = "CHANNEL_DOES_NOT_EXIST"
    GROUP_REMOVED = "GROUP_REMOVED"
    GROUP_DOES_NOT_EXIST = "GROUP_DOES_NOT_EXIST"


class GroupSendStatusEnum(Enum):
    GROUP_SEND = "GROUP_SEND"
    NO_SUCH_GROUP = "NO_SUCH_GROUP"


class PayloadTypeEnum(Enum):
    JSON = "json"
    TEXT = "text"
    BYTES = "bytes"


def _utc_now() -> datetime:
    return datetime.now(tz=timezone.utc)


@dataclass
class ChannelMessageDC:
    """One history entry: ``payload``, ``uuid``, ``created`` (as in Nexios) and ``offset``.

    Unlike Nexios (whose defaults are evaluated once, so every entry shares
    one uuid and one time), each entry gets its own. Entries read back from
    the hub carry the hub's timestamp and their offset in the group; their
    uuid is derived from (epoch, offset), so it is stable across reads.
    """

    payload: typing.Union[str, bytes, typing.Any]
    uuid: uuid.UUID = field(default_factory=uuid.uuid4)
    created: datetime = field(default_factory=_utc_now)
    offset: int = 0


# ------------------------------------------------------------------- history


class BaseHistoryManager(ABC):
    """Nexios' history manager interface: implement it to store history elsewhere."""

    @abstractmethod
    async def save_message(self, group_name: str, message: ChannelMessageDC) -> None:
        """Save a message to history for a specific group."""

    @abstractmethod
    async def get_history(
        self, group_name: typing.Optional[str] = None
    ) -> typing.Union[typing.List[ChannelMessageDC], typing.Dict[str, typing.List[ChannelMessageDC]]]:
        """A group's messages (oldest first), or ``{group: messages}`` for every group."""

    @abstractmethod
    async def flush_history(self, group_name: typing.Optional[str] = None) -> None:
        """Clear one group's history, or every group's."""


class _GroupCache:
    """The entries of one group already turned into ChannelMessageDC objects."""

    __slots__ = ("epoch", "last_offset", "entries")

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.last_offset = 0
        self.entries: typing.Deque[ChannelMessageDC] = deque()


class InMemoryHistoryManager(BaseHistoryManager):
    """The default history: kept in a native :class:`channelbox.Hub`, bounded per group.

    ``history_size`` bounds each group's payload bytes (Nexios' argument and
    default, 1 MiB); ``history_max_messages`` and ``history_ttl_seconds``
    (0 = no bound) bound count and age. When a bound is passed the oldest
    messages are evicted; Nexios instead wipes the whole group. A
    ``history_size`` of 0 or less keeps nothing.

    Entries read back are cached as :class:`ChannelMessageDC` objects, so a
    read only converts what is new since the last one.
    """

    def __init__(
        self,
        history_size: int = 1_048_576,
        *,
        history_max_messages: int = 0,
        history_ttl_seconds: int = 0,
    ) -> None:
        self.history_size = history_size
        self.history_max_messages = history_max_messages
        self.history_ttl_seconds = history_ttl_seconds
        self._hub: typing.Optional[Hub] = None
        self._cache: typing.Dict[str, _GroupCache] = {}

    @property
    def hub(self) -> Hub:
        """The hub holding the history (created on first use)."""
        if self._hub is None or self._hub.closed:
            size = max(int(self.history_size), 1)
            self._hub = Hub(
                history_max_bytes=size,
                history_max_messages=int(self.history_max_messages),
                history_ttl_seconds=int(self.history_ttl_seconds),
                # One message can never be larger than the whole history.
                max_payload_bytes=size,
                max_group_name_bytes=1 << 16,
            )
            self._cache.clear()
        return self._hub

    def save_payload(
        self, group_name: str, payload: typing.Any, kind: typing.Union[Kind, str, int, None] = None
    ) -> int:
        """Saves one payload, encoded as :func:`channelbox.encode_payload` does
        (``kind=Kind.JSON`` with a ``str``: JSON text already encoded, saved as
        it is). Returns its offset in the group, 0 when it is not kept: a
        payload the hub refuses (too large, NaN in JSON, not UTF-8) is logged
        and dropped from history, never raised, as the message is still
        delivered."""
        if self.history_size <= 0:
            return 0
        try:
            return self.hub.group_send(str(group_name), payload, kind, save_history=True).offset
        except ChannelboxError as error:
            logger.warning("channelbox: message to %r not saved to history: %s", group_name, error)
            return 0

    async def save_message(self, group_name: str, message: ChannelMessageDC) -> None:
        """Saves ``message.payload`` (its uuid and time become the hub's)."""
        self.save_payload(group_name, message.payload)

    def _read(self, group_name: str, page: typing.Optional[HistoryPage] = None) -> typing.List[ChannelMessageDC]:
        hub = self.hub
        cache = self._cache.get(group_name)
        if page is None:
            page = hub.history(group_name, cache.last_offset if cache else 0, 0)
        epoch = page.epoch
        if cache is None or cache.epoch != epoch:
            if cache is not None and cache.last_offset:
                page = hub.history(group_name, 0, 0)
                epoch = page.epoch
            cache = self._cache[group_name] = _GroupCache(epoch)
        entries = cache.entries
        first = page.first_offset
        while entries and (first == 0 or entries[0].offset < first):
            entries.popleft()
        high = cache.last_offset
        epoch_bits = (epoch & 0xFFFF_FFFF_FFFF_FFFF) << 64
        from_ts = datetime.fromtimestamp
        utc = timezone.utc
        for message in page.messages:
            offset = message.offset
            if offset <= high:
                continue
            entries.append(
                ChannelMessageDC(
                    payload=message.data,
                    uuid=uuid.UUID(int=epoch_bits | offset, version=4),
                    created=from_ts(message.ts_ms / 1000, tz=utc),
                    offset=offset,
                )
            )
        cache.last_offset = max(high, page.last_offset)
        if not entries and not cache.last_offset:
            self._cache.pop(group_name, None)
        return list(entries)

    async def get_history(
        self, group_name: typing.Optional[str] = None
    ) -> typing.Union[typing.List[ChannelMessageDC], typing.Dict[str, typing.List[ChannelMessageDC]]]:
        """A group's kept messages, oldest first (``[]`` for an unknown group);
        without a name, ``{group: messages}`` for every group with history."""
        if group_name:
            try:
                return self._read(str(group_name))
            except ChannelboxError:  # a name the hub cannot hold has no history
                return []
        pages = self.hub.history(None, 0, 0)
        for name in list(self._cache):
            if name not in pages:
                del self._cache[name]
        return {name: self._read(name, page) for name, page in pages.items()}

    async def flush_history(self, group_name: typing.Optional[str] = None) -> None:
        """Forgets one group's history, or every group's."""
        if self._hub is None:
            return
        name = str(group_name) if group_name else None
        try:
            self.hub.history_flush(name)
        except ChannelboxError:
            return
        if name:
            self._cache.pop(name, None)
        else:
            self._cache.clear()


class NoOpHistoryManager(BaseHistoryManager):
    """Keeps nothing (as in Nexios)."""

    async def save_message(self, group_name: str, message: ChannelMessageDC) -> None:
        pass

    async def get_history(
        self, group_name: typing.Optional[str] = None
    ) -> typing.Union[typing.List[ChannelMessageDC], typing.Dict[str, typing.List[ChannelMessageDC]]]:
        if group_name:
            return []
        return {}

    async def flush_history(self, group_name: typing.Optional[str] = None) -> None:
        pass


# ------------------------------------------------------------------- sending


_KNOWN_WEBSOCKETS = {"nexios.websockets.base", "starlette.websockets"}
_FRAMES_JSON: typing.Dict[type, bool] = {}


def _sends_json_frames(cls: type) -> bool:
    """True for Nexios/Starlette WebSocket classes that keep the base
    ``send_json``: for them ``send_json(payload)`` is exactly
    ``send({"type": "websocket.send", "text": <payload as JSON>})``, so a
    frame encoded once can go to each socket's public ``send``."""
    try:
        return _FRAMES_JSON[cls]
    except KeyError:
        pass
    frames = False
    for base in cls.__mro__:
        if base.__name__ == "WebSocket" and base.__module__ in _KNOWN_WEBSOCKETS:
            frames = getattr(cls, "send_json", None) is getattr(base, "send_json", None)
            break
    _FRAMES_JSON[cls] = frames
    return frames


async def _await(awaitable: typing.Awaitable[typing.Any]) -> typing.Any:
    return await awaitable


class _Resumed:
    """``await _Resumed(coro, yielded)`` finishes a coroutine that was started
    by hand (``yielded = coro.send(None)``) and suspended, inside the task
    that awaits this.

    It does what ``await coro`` would have done from that point: what the
    coroutine yields goes up to the task unchanged, and what the task sends
    or throws back (a result, a cancellation) goes down to the coroutine.
    Only the coroutine protocol (``send``, ``throw``, ``close``) and
    :func:`asyncio.isfuture` are used, no private attribute of asyncio.
    """

    __slots__ = ("_coro", "_yielded")

    def __init__(self, coro: typing.Coroutine[typing.Any, typing.Any, typing.Any], yielded: typing.Any) -> None:
        self._coro = coro
        self._yielded = yielded

    def __await__(self) -> typing.Generator[typing.Any, typing.Any, typing.Any]:
        coro, yielded = self._coro, self._yielded
        self._yielded = None
        # A future that resolved before this task took it over: go on at once,
        # as the coroutine would have under a task of its own. Handing it to
        # the task would cost a turn of the loop, in which a later send to the
        # same socket could overtake this one.
        while asyncio.isfuture(yielded) and yielded.done():
            try:
                yielded = coro.send(None)
            except StopIteration as stop:
                return stop.value
        while True:
            try:
                sent = yield yielded
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as error:  # noqa: BLE001 - the coroutine's to handle
                try:
                    yielded = coro.throw(error)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    yielded = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


_BACKGROUND: typing.Set["asyncio.Task[typing.Any]"] = set()


def _background(coro: typing.Coroutine[typing.Any, typing.Any, typing.Any]) -> None:
    task = asyncio.get_running_loop().create_task(coro)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


async def _close_quietly(websocket: typing.Any, timeout: float, code: int = 1013) -> None:
    close = getattr(websocket, "close", None)
    if close is None:
        return
    try:
        await asyncio.wait_for(close(code=code), timeout)
    except TypeError:
        try:
            await asyncio.wait_for(close(), timeout)
        except BaseException as error:  # noqa: BLE001 - best effort
            logger.debug("channelbox: closing a dropped websocket failed: %r", error)
    except BaseException as error:  # noqa: BLE001 - best effort
        logger.debug("channelbox: closing a dropped websocket failed: %r", error)


# ------------------------------------------------------------------- Channel


class Channel:
    """One websocket in one or more groups (Nexios' ``Channel``).

    ``websocket`` is any object with ``send_json``, ``send_text`` and
    ``send_bytes`` coroutine methods (Nexios, Starlette, FastAPI WebSockets or
    your own); ``payload_type`` is ``"json"``, ``"text"`` or ``"bytes"`` and
    picks which of them is called; ``expires`` is a TTL in seconds counted,
    as in Nexios, from the channel's last send (``created`` is refreshed on
    every send). ``uuid`` and ``created`` are as in Nexios.
    """

    def __init__(
        self,
        websocket: typing.Any,
        payload_type: str,
        expires: typing.Optional[int] = None,
    ) -> None:
        missing = [m for m in ("send_json", "send_text", "send_bytes") if not callable(getattr(websocket, m, None))]
        if missing:
            raise TypeError(
                f"websocket must have send_json, send_text and send_bytes; "
                f"{type(websocket).__name__} lacks {', '.join(missing)}"
            )
        if expires and (isinstance(expires, bool) or not isinstance(expires, int)):
            raise TypeError(f"expires must be an int number of seconds, not {type(expires).__name__}")
        if isinstance(payload_type, PayloadTypeEnum):
            payload_type = payload_type.value
        if not isinstance(payload_type, str) or payload_type not in ("json", "text", "bytes"):
            raise ValueError(f"payload_type must be 'json', 'text' or 'bytes', not {payload_type!r}")
        self.websocket = websocket
        self.expires = expires
        self.payload_type = payload_type
        self.uuid = uuid.uuid4()
        self.created = time.time()
        # A send still in flight (an asyncio.Task), and what waits behind it.
        self._busy: typing.Optional["asyncio.Task[None]"] = None
        self._backlog: typing.Deque[typing.Tuple[typing.Any, typing.Optional[str]]] = deque()

    @property
    def websocket(self) -> typing.Any:
        """The websocket this channel sends to."""
        return self._ws

    @websocket.setter
    def websocket(self, websocket: typing.Any) -> None:
        self._ws = websocket
        self._frames_json = _sends_json_frames(type(websocket))

    def _start(self, payload: typing.Any, text: typing.Optional[str]) -> typing.Awaitable[typing.Any]:
        """The send of one payload (``text``: its JSON frame, if already encoded)."""
        pt = self.payload_type
        ws = self._ws
        if pt == "json":
            if self._frames_json:
                # What send_json would send, without encoding the payload again.
                return ws.send({"type": "websocket.send", "text": text if text is not None else _dumps(payload)})
            return ws.send_json(payload)
        if pt == "text":
            return ws.send_text(payload)
        if pt == "bytes":
            return ws.send_bytes(payload)
        return ws.send(payload)

    async def _send(self, payload: typing.Any) -> None:
        """Sends one payload as Nexios' ``Channel._send`` does (RuntimeError is logged)."""
        try:
            await self._start(payload, None)
        except RuntimeError as error:
            logger.debug(error)
        self.created = time.time()

    async def _is_expired(self) -> bool:
        if not self.expires:
            return False
        return (self.expires + int(self.created)) < time.time()

    def __repr__(self) -> str:
        return f"{self.__class__.__name__} {self.uuid=} {self.payload_type=} {self.expires=}"


# ------------------------------------------------------------------- ChannelBox


def _env_int(name: str, default: int) -> int:
    return int(os.getenv(name, default))


class ChannelBox:
    """Groups of channels, fan-out and history (Nexios' ``ChannelBox``).

    Every method is an async classmethod over class-level state, as in Nexios:
    ``CHANNEL_GROUPS`` is ``{group_name: {Channel: ...}}`` and history goes to
    ``HISTORY_MANAGER`` (by default the hub-backed
    :class:`InMemoryHistoryManager` bounded by ``HISTORY_SIZE`` bytes per
    group, from ``CHANNEL_BOX_HISTORY_SIZE``).

    Settings added by channelbox (class attributes, defaults from the
    environment): ``SEND_TIMEOUT`` (``CHANNEL_BOX_SEND_TIMEOUT``, 5 s), how long
    one socket's send may take before the socket is dropped from its groups;
    ``MAX_PENDING`` (``CHANNEL_BOX_MAX_PENDING``, 1000), how many messages may
    queue behind a socket's unfinished send before it is dropped.
    """

    CHANNEL_GROUPS: typing.Dict[str, typing.Any] = {}
    HISTORY_SIZE: int = _env_int("CHANNEL_BOX_HISTORY_SIZE", 1_048_576)
    HISTORY_MANAGER: BaseHistoryManager = InMemoryHistoryManager(
        history_size=HISTORY_SIZE,
        history_max_messages=_env_int("CHANNEL_BOX_HISTORY_MESSAGES", 0),
        history_ttl_seconds=_env_int("CHANNEL_BOX_HISTORY_TTL", 0),
    )
    SEND_TIMEOUT: float = float(os.getenv("CHANNEL_BOX_SEND_TIMEOUT", 5))
    MAX_PENDING: int = _env_int("CHANNEL_BOX_MAX_PENDING", 1000)

    @classmethod
    async def add_channel_to_group(cls, channel: Channel, group_name: str = "default") -> ChannelAddStatusEnum:
        """Adds a channel to a group: ``CHANNEL_ADDED`` when the group is new, else ``CHANNEL_EXIST``."""
        if not group_name:
            raise ValueError("Group name must to be set.")
        group = cls.CHANNEL_GROUPS.get(group_name)
        if group is None:
            group = cls.CHANNEL_GROUPS[group_name] = {}
            status = ChannelAddStatusEnum.CHANNEL_ADDED
        else:
            status = ChannelAddStatusEnum.CHANNEL_EXIST
        group[channel] = ...
        return status

    @classmethod
    async def remove_channel_from_group(cls, channel: Channel, group_name: str) -> ChannelRemoveStatusEnum:
        """Removes a channel from a group; the group goes when it is empty.

        ``CHANNEL_REMOVED``, ``GROUP_REMOVED`` (the group is now empty and gone),
        ``GROUP_DOES_NOT_EXIST``, or ``CHANNEL_DOES_NOT_EXIST`` (the channel was
        not in a non-empty group; Nexios raises UnboundLocalError there).
        Then sweeps expired channels, as Nexios does.
        """
        status = ChannelRemoveStatusEnum.CHANNEL_DOES_NOT_EXIST
        group = cls.CHANNEL_GROUPS.get(group_name)
        if group is not None and channel in group:
            del group[channel]
            status = ChannelRemoveStatusEnum.CHANNEL_REMOVED
        if not cls.CHANNEL_GROUPS.get(group_name):
            if cls.CHANNEL_GROUPS.pop(group_name, None) is not None:
                status = ChannelRemoveStatusEnum.GROUP_REMOVED
            else:
                status = ChannelRemoveStatusEnum.GROUP_DOES_NOT_EXIST
        await cls._clean_expired()
        return status

    @classmethod
    def set_history_manager(cls, manager: BaseHistoryManager) -> None:
        """Replaces the history manager (any :class:`BaseHistoryManager`)."""
        cls.HISTORY_MANAGER = manager

    @classmethod
    async def group_send(
        cls,
        group_name: str = "default",
        payload: typing.Union[typing.Dict[str, typing.Any], str, bytes] = {},
        save_history: bool = False,
    ) -> GroupSendStatusEnum:
        """Sends a payload to every channel of a group: ``GROUP_SEND``, or
        ``NO_SUCH_GROUP`` when the group has no channel.

        With ``save_history`` the payload is saved first. Each channel gets
        it through its payload type's send method; a JSON payload is encoded
        once. Sends start in group order without waiting on one another: a
        send that suspends finishes in its own task (bounded by
        ``SEND_TIMEOUT``) and later payloads to that socket queue behind it.
        A socket whose send raises or times out is removed from every group.
        """
        if not group_name:
            raise ValueError("Group name must to be set.")
        text: typing.Optional[str] = None
        if save_history:
            manager = cls.HISTORY_MANAGER
            if isinstance(manager, InMemoryHistoryManager):
                if isinstance(payload, (str, bytes, bytearray, memoryview)):
                    manager.save_payload(group_name, payload)
                else:
                    # Encoded here, once: the same text is each socket's frame.
                    text = _dumps(payload)
                    manager.save_payload(group_name, text, Kind.JSON)
            else:
                await manager.save_message(group_name, ChannelMessageDC(payload=payload))

        channels = cls.CHANNEL_GROUPS.get(group_name)
        if not channels:
            return GroupSendStatusEnum.NO_SUCH_GROUP
        now = time.time()
        failed: typing.Optional[typing.List[typing.Tuple[Channel, typing.Any]]] = None
        # A snapshot: a send may join or leave channels while it runs.
        for channel in tuple(channels):
            if channel._busy is not None:
                # An earlier send to this socket is still running: keep the order.
                backlog = channel._backlog
                if len(backlog) >= cls.MAX_PENDING:
                    if failed is None:
                        failed = []
                    failed.append((channel, f"more than {cls.MAX_PENDING} messages waiting"))
                    continue
                if text is None and channel.payload_type == "json":
                    text = _dumps(payload)
                backlog.append((payload, text))
                continue
            if text is None and channel.payload_type == "json":
                # Once per send, and outside the sends: a payload that cannot be
                # encoded is the caller's error, not the sockets'.
                text = _dumps(payload)
            try:
                if channel._frames_json and channel.payload_type == "json":
                    # The frame encoded once, to the socket's public ASGI send:
                    # the same bytes send_json would send.
                    coro = channel._ws.send({"type": "websocket.send", "text": text})
                else:
                    coro = channel._start(payload, text)
                    if type(coro) is not CoroutineType:
                        coro = _await(coro)
                # Started here and now (sends start in group order), without a
                # task: most sends never suspend (the ASGI send only fills a
                # buffer), and a task per socket per message would cost more
                # than the send.
                yielded = coro.send(None)
            except StopIteration:
                channel.created = now
                continue
            except Exception as error:  # noqa: BLE001 - one socket never stops the others
                if failed is None:
                    failed = []
                failed.append((channel, error))
                continue
            # It suspended: it finishes in its own task; nobody waits for it here.
            channel._busy = cls._spawn(channel, coro, yielded)
        if failed:
            for channel, why in failed:
                cls._drop(channel, why, close=isinstance(why, str))
        return GroupSendStatusEnum.GROUP_SEND

    @classmethod
    def _spawn(cls, channel: Channel, coro: typing.Any, yielded: typing.Any) -> "asyncio.Task[None]":
        task = asyncio.get_running_loop().create_task(cls._finish(channel, coro, yielded))

        def done(task: "asyncio.Task[None]") -> None:
            if channel._busy is task:
                channel._busy = None
            if coro.cr_frame is not None:
                # Cancelled before it ever ran: end the send it was to finish
                # as a task would have, with a CancelledError.
                try:
                    coro.throw(asyncio.CancelledError())
                except BaseException:  # noqa: BLE001
                    pass
                else:
                    coro.close()

        task.add_done_callback(done)
        return task

    @classmethod
    async def _finish(cls, channel: Channel, coro: typing.Any, yielded: typing.Any) -> None:
        """Finishes a suspended send, then what queued behind it, each within SEND_TIMEOUT."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        timed_out = False

        def expire() -> None:
            nonlocal timed_out
            timed_out = True
            if task is not None:
                task.cancel()

        handle = loop.call_later(cls.SEND_TIMEOUT, expire)
        try:
            await _Resumed(coro, yielded)
            channel.created = time.time()
            backlog = channel._backlog
            while backlog:
                payload, text = backlog.popleft()
                handle.cancel()
                handle = loop.call_later(cls.SEND_TIMEOUT, expire)
                await channel._start(payload, text)
                channel.created = time.time()
        except asyncio.CancelledError:
            if timed_out:
                cls._drop(channel, f"send took longer than {cls.SEND_TIMEOUT} s", close=True)
            else:
                cls._drop(channel, "send cancelled", close=False)
                raise
        except Exception as error:  # noqa: BLE001
            cls._drop(channel, error, close=False)
        finally:
            handle.cancel()
            if channel._busy is task:
                channel._busy = None

    @classmethod
    def _drop(cls, channel: Channel, why: typing.Any, close: bool) -> None:
        """Removes a failing channel from every group; closes it when it was only slow."""
        logger.warning("channelbox: removing channel %s from its groups: %s", channel.uuid, why)
        groups = cls.CHANNEL_GROUPS
        for name in list(groups):
            members = groups.get(name)
            if members is not None and channel in members:
                del members[channel]
                if not members:
                    groups.pop(name, None)
        channel._backlog.clear()
        busy = channel._busy
        if busy is not None and busy is not asyncio.current_task():
            busy.cancel()
        if close:
            _background(_close_quietly(channel._ws, cls.SEND_TIMEOUT))

    @classmethod
    async def show_groups(cls) -> typing.Dict[str, typing.Any]:
        """``{group_name: {Channel: ...}}``, the live mapping (as in Nexios)."""
        return cls.CHANNEL_GROUPS

    @classmethod
    async def flush_groups(cls) -> None:
        """Forgets every group (sockets stay open; history is kept)."""
        cls.CHANNEL_GROUPS = {}

    @classmethod
    async def show_history(
        cls, group_name: str = ""
    ) -> typing.Union[typing.List[ChannelMessageDC], typing.Dict[str, typing.List[ChannelMessageDC]]]:
        """A group's history as a list of :class:`ChannelMessageDC`, oldest first
        (``[]`` for an unknown group); without a name ``{group: [...]}``."""
        return await cls.HISTORY_MANAGER.get_history(group_name if group_name else None)

    @classmethod
    async def flush_history(cls, group_name: typing.Optional[str] = None) -> None:
        """Forgets one group's history, or every group's."""
        await cls.HISTORY_MANAGER.flush_history(group_name)

    @classmethod
    async def _clean_expired(cls) -> None:
        """Removes expired channels and empty groups (safe while groups change)."""
        now = time.time()
        groups = cls.CHANNEL_GROUPS
        for name in list(groups):
            members = groups.get(name)
            if members is None:
                continue
            for channel in list(members):
                if channel.expires and (channel.expires + int(channel.created)) < now:
                    members.pop(channel, None)
            if not members:
                groups.pop(name, None)

    @classmethod
    async def close_all_connections(cls) -> None:
        """Closes every websocket of every group, concurrently (each within
        ``SEND_TIMEOUT``; failures are logged), then forgets every group."""
        channels = list(dict.fromkeys(c for members in list(cls.CHANNEL_GROUPS.values()) for c in list(members)))
        cls.CHANNEL_GROUPS = {}

        async def close(channel: Channel) -> None:
            busy = channel._busy
            channel._backlog.clear()
            if busy is not None and busy is not asyncio.current_task():
                busy.cancel()
            try:
                await asyncio.wait_for(channel._ws.close(), cls.SEND_TIMEOUT)
            except Exception as error:  # noqa: BLE001
                logger.error("Failed to close connection for channel %s: %r", channel.uuid, error)

        if channels:
            await asyncio.gather(*(close(c) for c in channels))
