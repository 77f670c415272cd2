"""Exceptions: one class per family of ``cbx_result`` codes.

Every error the native library reports becomes a :class:`ChannelboxError`
subclass whose message is the library's ``cbx_last_error()``, and whose
:attr:`~ChannelboxError.code` / :attr:`~ChannelboxError.code_name` say which
code it was. Families also derive from the matching built-in exception, so
``except ValueError`` catches bad input and ``except LookupError`` catches
unknown connections and offsets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Optional, Type

from . import _ffi

if TYPE_CHECKING:  # pragma: no cover
    from .hub import CloseReason


class ChannelboxError(Exception):
    """Base class of every channelbox error."""

    #: The ``cbx_result`` code, or ``None`` for errors raised by Python itself.
    code: Optional[int] = None

    def __init__(self, message: str, code: Optional[int] = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def code_name(self) -> str:
        """The code's C name, e.g. ``"CBX_INVALID_JSON"``."""
        if self.code is None:
            return ""
        return (_ffi.lib.cbx_result_name(self.code) or b"").decode()


class InvalidArgument(ChannelboxError, ValueError):
    """A setting, name or value is out of range or malformed (``CBX_INVALID_ARGUMENT``)."""

    code = _ffi.CBX_INVALID_ARGUMENT


class NullPointer(InvalidArgument):
    """A required pointer was NULL (``CBX_NULL_POINTER``); a bug in the binding."""

    code = _ffi.CBX_NULL_POINTER


class InvalidUtf8(InvalidArgument):
    """Text that must be UTF-8 is not (``CBX_INVALID_UTF8``)."""

    code = _ffi.CBX_INVALID_UTF8


class InvalidJson(InvalidArgument):
    """A JSON payload or config does not parse (``CBX_INVALID_JSON``)."""

    code = _ffi.CBX_INVALID_JSON


class TooLarge(InvalidArgument):
    """A payload or name is larger than the hub allows (``CBX_TOO_LARGE``)."""

    code = _ffi.CBX_TOO_LARGE


class NotFound(ChannelboxError, LookupError):
    """Base of the "no such ..." errors."""


class NoSuchConnection(NotFound):
    """The connection id is unknown or was closed by the host (``CBX_NO_SUCH_CONNECTION``)."""

    code = _ffi.CBX_NO_SUCH_CONNECTION


class NoSuchMessage(NotFound):
    """No history entry has that offset, never saved or evicted (``CBX_NO_SUCH_MESSAGE``)."""

    code = _ffi.CBX_NO_SUCH_MESSAGE


class Empty(ChannelboxError, TimeoutError):
    """Nothing arrived before the timeout (``CBX_EMPTY``)."""

    code = _ffi.CBX_EMPTY


class ConnectionClosed(ChannelboxError):
    """The connection is closed and everything queued for it was received (``CBX_CLOSED``).

    :attr:`close_reason` says why as a :class:`~channelbox.CloseReason`
    (slow consumer, TTL, ``close_all``, closed by the host; ``None`` when
    unknown) and :attr:`reason` as the hub's text.
    """

    code = _ffi.CBX_CLOSED

    def __init__(
        self,
        message: str,
        code: Optional[int] = None,
        reason: str = "",
        close_reason: "Optional[CloseReason]" = None,
    ) -> None:
        super().__init__(message, code)
        #: The hub's text saying why (the message when it gave none).
        self.reason = reason or message
        #: Why, as a :class:`~channelbox.CloseReason` (``None`` when unknown).
        self.close_reason = close_reason

    @property
    def close_detail(self) -> str:
        """The hub's text saying why (:attr:`reason`), named as on :class:`~channelbox.Connection`."""
        return self.reason


class HubClosed(ChannelboxError):
    """The hub was closed; its handle cannot be used any more."""


class EngineUnavailable(ChannelboxError, ConnectionError):
    """The scale-out engine cannot be reached (``CBX_ENGINE_UNAVAILABLE``)."""

    code = _ffi.CBX_ENGINE_UNAVAILABLE


class StorageError(ChannelboxError, OSError):
    """The durable history store (``history_dir``) cannot be opened or cannot
    write, e.g. the disk is full (``CBX_STORAGE``); the message names the file
    and the OS error. Saved sends are refused while it cannot write."""

    code = _ffi.CBX_STORAGE


class InternalError(ChannelboxError):
    """A bug in channelbox: a panic was caught at the C boundary (``CBX_PANIC``)."""

    code = _ffi.CBX_PANIC


_BY_CODE: Dict[Optional[int], Type[ChannelboxError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NullPointer,
        InvalidUtf8,
        InvalidJson,
        TooLarge,
        NoSuchConnection,
        NoSuchMessage,
        Empty,
        ConnectionClosed,
        EngineUnavailable,
        StorageError,
        InternalError,
    )
}


def error_for(code: int) -> ChannelboxError:
    """The exception for a failed call's ``code``, carrying ``cbx_last_error()``.

    Must be called on the thread that made the call, before any other call.
    """
    message = (_ffi.lib.cbx_last_error() or b"").decode("utf-8", "replace")
    cls = _BY_CODE.get(code, ChannelboxError)
    if not message:
        name = (_ffi.lib.cbx_result_name(code) or b"").decode()
        message = f"{name} ({code})"
    return cls(message, code)


def check(code: int) -> None:
    """Raises :func:`error_for` ``code`` unless it is ``CBX_OK``."""
    if code:
        raise error_for(code)
