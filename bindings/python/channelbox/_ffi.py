"""Loads ``libchannelbox`` once and declares the C signatures the package uses.

Nothing else lives here: the Pythonic layer is in :mod:`channelbox.hub`.
The library is found, in order, through the ``CHANNELBOX_LIB`` environment
variable (a path to the shared library) or next to this file, where
``pip install`` puts it. Its ``cbx_version()`` must equal the package version.
"""

from __future__ import annotations

import ctypes
import os
import sys
from ctypes import (
    POINTER,
    Structure,
    c_char_p,
    c_int,
    c_int32,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path

from ._version import __version__

if sys.platform == "darwin":
    LIBRARY_NAME = "libchannelbox.dylib"
elif sys.platform == "win32":
    LIBRARY_NAME = "channelbox.dll"
else:
    LIBRARY_NAME = "libchannelbox.so"

# Result codes (cbx_result).
CBX_OK = 0
CBX_EMPTY = 7001
CBX_CLOSED = 7002
CBX_INVALID_ARGUMENT = 7100
CBX_NULL_POINTER = 7101
CBX_INVALID_UTF8 = 7102
CBX_INVALID_JSON = 7103
CBX_TOO_LARGE = 7104
CBX_NO_SUCH_CONNECTION = 7200
CBX_NO_SUCH_MESSAGE = 7202
CBX_ENGINE_UNAVAILABLE = 7300
CBX_STORAGE = 7400
CBX_PANIC = 7999

#: The result codes above by name. A hand copy of the header's: tests/test_ffi.py
#: checks it against ``cbx_result_name`` and ``include/channelbox.h``.
RESULTS = {name: value for name, value in globals().items() if name.startswith("CBX_")}

# Payload kinds (cbx_kind).
CBX_JSON = 1
CBX_TEXT = 2
CBX_BINARY = 3

# cbx_group_send flags.
CBX_SAVE_HISTORY = 1

# Why a connection was closed (cbx_close_code).
CBX_CLOSE_NONE = 0
CBX_CLOSE_CLOSED_BY_HOST = 1
CBX_CLOSE_HOST = 2
CBX_CLOSE_SLOW_CONSUMER = 3
CBX_CLOSE_EXPIRED = 4
CBX_CLOSE_HUB_CLOSED = 5
CBX_CLOSE_ENGINE_LOST_SUBSCRIPTION = 6
CBX_CLOSE_ENGINE_MISSED_MESSAGES = 7


class cbx_send_report(Structure):
    """``struct cbx_send_report``."""

    _fields_ = [
        ("delivered", c_uint64),
        ("dropped", c_uint64),
        ("offset", c_uint64),
        ("disconnected", c_uint64),
    ]


class cbx_message_view(Structure):
    """``struct cbx_message_view``: one message of a batch, borrowed."""

    _fields_ = [
        ("kind", c_uint32),
        ("data", c_void_p),
        ("len", c_size_t),
        ("group", c_char_p),
        ("offset", c_uint64),
        ("ts_ms", c_uint64),
    ]


hub_p = c_void_p  # cbx_hub *
message_p = c_void_p  # cbx_message *
# Payload bytes are passed as char* so a Python ``bytes`` goes in without a copy.
data_p = c_char_p

_SIGNATURES = {
    # name: (restype, argtypes)
    "cbx_version": (c_char_p, []),
    "cbx_last_error": (c_char_p, []),
    "cbx_result_name": (c_char_p, [c_int32]),
    "cbx_hub_new": (c_int32, [c_char_p, POINTER(hub_p)]),
    "cbx_hub_free": (None, [hub_p]),
    "cbx_conn_open": (c_int32, [hub_p, c_char_p, c_uint32, POINTER(c_uint64)]),
    "cbx_conn_close": (c_int32, [hub_p, c_uint64]),
    "cbx_conn_send": (c_int32, [hub_p, c_uint64, c_uint32, data_p, c_size_t]),
    "cbx_conn_recv": (c_int32, [hub_p, c_uint64, c_int32, POINTER(message_p)]),
    "cbx_conn_recv_batch": (
        c_int32,
        [hub_p, c_uint64, POINTER(message_p), c_size_t, POINTER(c_size_t)],
    ),
    "cbx_conn_close_reason": (
        c_int32,
        [hub_p, c_uint64, POINTER(c_uint32), POINTER(c_uint32), POINTER(c_void_p)],
    ),
    "cbx_hub_ready_fd": (c_int, [hub_p]),
    "cbx_hub_take_ready": (c_int32, [hub_p, POINTER(c_uint64), c_size_t, POINTER(c_size_t)]),
    "cbx_message_kind": (c_uint32, [message_p]),
    "cbx_message_data": (c_void_p, [message_p, POINTER(c_size_t)]),
    "cbx_message_group": (c_char_p, [message_p]),
    "cbx_message_offset": (c_uint64, [message_p]),
    "cbx_message_ts_ms": (c_uint64, [message_p]),
    "cbx_message_views": (c_int32, [POINTER(message_p), c_size_t, POINTER(cbx_message_view)]),
    "cbx_message_free": (None, [message_p]),
    "cbx_messages_free": (None, [POINTER(message_p), c_size_t]),
    "cbx_group_add": (c_int32, [hub_p, c_uint64, c_char_p]),
    "cbx_group_remove": (c_int32, [hub_p, c_uint64, c_char_p]),
    "cbx_group_send": (
        c_int32,
        [hub_p, c_char_p, c_uint32, data_p, c_size_t, c_uint32, POINTER(cbx_send_report)],
    ),
    "cbx_user_send": (
        c_int32,
        [hub_p, c_char_p, c_uint32, data_p, c_size_t, POINTER(cbx_send_report)],
    ),
    "cbx_groups_json": (c_int32, [hub_p, POINTER(c_void_p)]),
    "cbx_history_json": (c_int32, [hub_p, c_char_p, c_uint64, c_uint32, POINTER(c_void_p)]),
    "cbx_history_replace": (c_int32, [hub_p, c_char_p, c_uint64, c_uint32, data_p, c_size_t]),
    "cbx_history_flush": (c_int32, [hub_p, c_char_p]),
    "cbx_groups_flush": (c_int32, [hub_p]),
    "cbx_close_all": (c_int32, [hub_p]),
    "cbx_stats_json": (c_int32, [hub_p, POINTER(c_void_p)]),
    "cbx_string_free": (None, [c_void_p]),
}

_HOW_TO_FIX = (
    "Reinstall the package so that it builds and ships the library "
    "(`pip install ./bindings/python` from the channelbox repository, which runs "
    "`cargo build --release`), or point CHANNELBOX_LIB at a libchannelbox built "
    f"from channelbox {__version__} (e.g. CHANNELBOX_LIB=/path/to/target/release/{LIBRARY_NAME})."
)


def library_path() -> Path:
    """The path of the shared library this process loads (or would load)."""
    override = os.environ.get("CHANNELBOX_LIB")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent / LIBRARY_NAME


def _load() -> ctypes.CDLL:
    path = library_path()
    source = "CHANNELBOX_LIB" if os.environ.get("CHANNELBOX_LIB") else "the channelbox package"
    if not path.is_file():
        raise ImportError(f"channelbox: no native library at {path} (from {source}). {_HOW_TO_FIX}")
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as error:
        raise ImportError(f"channelbox: cannot load {path} ({error}). {_HOW_TO_FIX}") from error
    names = ["cbx_version"] + [name for name in _SIGNATURES if name != "cbx_version"]
    for name in names:
        restype, argtypes = _SIGNATURES[name]
        try:
            function = getattr(lib, name)
        except AttributeError:
            raise ImportError(
                f"channelbox: {path} has no symbol {name}; it is not a channelbox "
                f"{__version__} library. {_HOW_TO_FIX}"
            ) from None
        function.restype = restype
        function.argtypes = argtypes
        if name == "cbx_version":
            # First, so that an older or newer library is named as such.
            version = (lib.cbx_version() or b"").decode("utf-8", "replace")
            if version != __version__:
                raise ImportError(
                    f"channelbox: the native library {path} is version {version!r}, but the "
                    f"Python package is {__version__!r}; they must match. {_HOW_TO_FIX}"
                )
    return lib


lib = _load()
