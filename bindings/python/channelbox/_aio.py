"""asyncio on the hub's readiness fd: one reader per hub and event loop.

The hub has one eventfd that is readable while some connection has become
ready (its queue went from empty to non-empty, or it closed). For each event
loop that awaits a connection of the hub, :class:`Readiness` registers one
``loop.add_reader`` callback on (a duplicate of) that fd. The callback takes
the ready connection ids (``cbx_hub_take_ready``) and resolves the futures of
the tasks waiting on them. No thread per connection, no polling.

The fd is edge-triggered per connection, so a receiver waits only after it
has drained its connection until ``CBX_EMPTY`` (see
:meth:`channelbox.Connection.recv_async`): the next message then lists the
connection again. Messages stay in the hub's bounded queue until a receiver
asks for them, so the slow-consumer policy still applies to async receivers.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import threading
import weakref
from ctypes import byref, c_size_t, c_uint64
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from ._ffi import CBX_INVALID_ARGUMENT, lib
from .errors import HubClosed, check

if TYPE_CHECKING:  # pragma: no cover
    from .hub import Hub

_TAKE = 1024
_get_running_loop = asyncio._get_running_loop


def _resolve(future: "asyncio.Future[None]") -> None:
    if not future.done():
        future.set_result(None)


class Readiness:
    """The asyncio side of one hub: readers per loop, waiters per connection."""

    def __init__(self, hub: "Hub") -> None:
        self._hub = weakref.ref(hub)
        self._lock = threading.Lock()
        self._waiters: Dict[int, List["asyncio.Future[None]"]] = {}
        # loop -> (our duplicate of the ready fd, finalizer closing it)
        self._readers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Tuple[int, Any]]" = (
            weakref.WeakKeyDictionary()
        )
        # Loops that cannot be weakly referenced (kept until the hub closes).
        self._strong_readers: Dict[asyncio.AbstractEventLoop, Tuple[int, Any]] = {}
        self._fd: Optional[int] = None
        self._closed = False

    def attach(self) -> asyncio.AbstractEventLoop:
        """The running loop, with this hub's reader registered on it."""
        loop = asyncio.get_running_loop()
        if loop in self._strong_readers:
            return loop
        try:
            if loop in self._readers:
                return loop
        except TypeError:  # not weakly referenceable
            pass
        hub = self._hub()
        if hub is None or self._closed:
            raise HubClosed("the hub is closed")
        with self._lock:
            if self._fd is None:
                with hub._native as ptr:
                    fd = lib.cbx_hub_ready_fd(ptr)
                    if fd < 0:
                        check(CBX_INVALID_ARGUMENT)
                    self._fd = fd
            # Our own duplicate: its lifetime is tied to this loop, never to the
            # hub's fd, which cbx_hub_free closes.
            dup = os.dup(self._fd)
            ids = (c_uint64 * _TAKE)()
            loop.add_reader(dup, self._on_ready, ids)
            try:
                self._readers[loop] = (dup, weakref.finalize(loop, os.close, dup))
            except TypeError:
                self._strong_readers[loop] = (dup, lambda dup=dup: os.close(dup))
        return loop

    async def wait(self, conn_id: int, loop: asyncio.AbstractEventLoop) -> None:
        """Waits until ``conn_id`` is listed ready (or woken by a close)."""
        future = loop.create_future()
        with self._lock:
            self._waiters.setdefault(conn_id, []).append(future)
        try:
            await future
        finally:
            if not future.done() or future.cancelled():
                with self._lock:
                    waiting = self._waiters.get(conn_id)
                    if waiting is not None:
                        try:
                            waiting.remove(future)
                        except ValueError:
                            pass
                        if not waiting:
                            del self._waiters[conn_id]

    def wake(self, conn_id: int) -> None:
        """Resolves every future waiting on ``conn_id``, from any thread."""
        with self._lock:
            waiting = self._waiters.pop(conn_id, None)
        if waiting:
            self._resolve_all(waiting)

    @staticmethod
    def _resolve_all(waiting: List["asyncio.Future[None]"]) -> None:
        running = _get_running_loop()
        for future in waiting:
            if future.done():
                continue
            loop = future.get_loop()
            if loop is running:
                future.set_result(None)
            else:
                try:
                    loop.call_soon_threadsafe(_resolve, future)
                except RuntimeError:  # that loop is closed
                    pass

    def _on_ready(self, ids: "ctypes.Array[c_uint64]") -> None:  # noqa: F821
        hub = self._hub()
        if hub is None:
            return
        n = c_size_t()
        ready: List[int] = []
        try:
            with hub._native as ptr:
                while True:
                    check(lib.cbx_hub_take_ready(ptr, ids, _TAKE, byref(n)))
                    count = n.value
                    ready.extend(ids[:count])
                    if count < _TAKE:
                        break
        except HubClosed:
            return
        if not ready:
            return
        with self._lock:
            pop = self._waiters.pop
            woken = [pop(cid, None) for cid in ready]
        for waiting in woken:
            if waiting:
                self._resolve_all(waiting)

    def close(self) -> None:
        """Wakes every waiter (they then see the hub closed) and removes the readers."""
        with self._lock:
            self._closed = True
            waiting = [f for fs in self._waiters.values() for f in fs]
            self._waiters.clear()
            readers = list(self._readers.items()) + list(self._strong_readers.items())
            self._readers.clear()
            self._strong_readers.clear()
        self._resolve_all(waiting)
        running = _get_running_loop()
        for loop, (dup, finalizer) in readers:
            if loop is running or loop.is_closed() or not loop.is_running():
                try:
                    loop.remove_reader(dup)
                except Exception:  # a closed loop may refuse; the fd goes anyway
                    pass
                finalizer()
            else:
                def detach(loop: asyncio.AbstractEventLoop = loop, dup: int = dup, fin: Any = finalizer) -> None:
                    loop.remove_reader(dup)
                    fin()

                try:
                    loop.call_soon_threadsafe(detach)
                except RuntimeError:
                    finalizer()
