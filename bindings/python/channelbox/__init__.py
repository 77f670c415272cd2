"""channelbox: a WebSocket group hub core, from Python.

``channelbox.Hub`` is the hub itself (groups, fan-out, bounded history with
offsets, presence) over the native library; ``channelbox.ChannelBox`` and
``channelbox.Channel`` are a drop-in for ``nexios.websockets.channels``;
``channelbox.ServerApi`` is a client of the example hub's server API (HTTP,
standard library only).

>>> import channelbox
>>> with channelbox.Hub() as hub:
...     alice = hub.open(user="alice")
...     alice.join("chat_1")
...     report = hub.group_send("chat_1", {"text": "hi"}, save_history=True)
...     message = alice.recv(timeout=1)
...     (report.delivered, message.data, message.group, message.offset)
(1, {'text': 'hi'}, 'chat_1', 1)
"""

from ._version import __version__
from .channels import (
    BaseHistoryManager,
    Channel,
    ChannelAddStatusEnum,
    ChannelBox,
    ChannelMessageDC,
    ChannelRemoveStatusEnum,
    GroupSendStatusEnum,
    InMemoryHistoryManager,
    NoOpHistoryManager,
    PayloadTypeEnum,
)
from .errors import (
    ChannelboxError,
    ConnectionClosed,
    Empty,
    EngineUnavailable,
    StorageError,
    HubClosed,
    InternalError,
    InvalidArgument,
    InvalidJson,
    InvalidUtf8,
    NoSuchConnection,
    NoSuchMessage,
    NotFound,
    NullPointer,
    TooLarge,
)
from .hub import CloseReason, Connection, HistoryPage, Hub, Kind, Message, SendReport, encode_payload
from .server_api import ServerApi, ServerApiError

__all__ = [
    "__version__",
    # the hub
    "Hub",
    "Connection",
    "Message",
    "Kind",
    "CloseReason",
    "SendReport",
    "HistoryPage",
    "encode_payload",
    # errors
    "ChannelboxError",
    "InvalidArgument",
    "NullPointer",
    "InvalidUtf8",
    "InvalidJson",
    "TooLarge",
    "NotFound",
    "NoSuchConnection",
    "NoSuchMessage",
    "Empty",
    "ConnectionClosed",
    "HubClosed",
    "EngineUnavailable",
    "StorageError",
    "InternalError",
    # the example hub's server API, over HTTP
    "ServerApi",
    "ServerApiError",
    # the Nexios drop-in
    "ChannelBox",
    "Channel",
    "ChannelAddStatusEnum",
    "ChannelRemoveStatusEnum",
    "GroupSendStatusEnum",
    "PayloadTypeEnum",
    "ChannelMessageDC",
    "BaseHistoryManager",
    "InMemoryHistoryManager",
    "NoOpHistoryManager",
]
