"""asyncio receive on the hub's ready fd."""

import asyncio
import os
import threading

import pytest

import channelbox


async def test_recv_async_waits_for_a_message(hub):
    conn = hub.open()
    conn.join("g")
    asyncio.get_running_loop().call_later(0.02, hub.group_send, "g", {"late": True})
    message = await asyncio.wait_for(conn.recv_async(), 5)
    assert message.data == {"late": True}


async def test_many_connections_receive_at_once_from_one_reader(hub):
    conns = [hub.open(user=f"u{i}") for i in range(200)]
    for c in conns:
        c.join("room")

    async def take(conn, n):
        return [(await conn.recv_async()).data for _ in range(n)]

    tasks = [asyncio.ensure_future(take(c, 3)) for c in conns]
    await asyncio.sleep(0)
    for i in range(3):
        hub.group_send("room", i)
        await asyncio.sleep(0)
    results = await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert results == [[0, 1, 2]] * 200
    assert len(hub._aio._readers) == 1  # one reader for the hub on this loop


async def test_async_for_ends_when_the_connection_is_closed_and_drained(hub):
    conn = hub.open()
    conn.join("g")
    for i in range(300):  # more than one batch
        hub.group_send("g", i)
    hub.close_all()
    got = [m.data async for m in conn]
    assert got == list(range(300))


async def test_messages_pending_before_the_first_await_are_not_missed(hub):
    conn = hub.open()
    conn.join("g")
    hub.group_send("g", "early")
    assert (await asyncio.wait_for(conn.recv_async(), 5)).data == "early"
    hub.group_send("g", "next")
    assert (await asyncio.wait_for(conn.recv_async(), 5)).data == "next"


async def test_sends_from_another_thread_wake_the_loop(hub):
    conns = [hub.open() for _ in range(20)]
    for c in conns:
        c.join("g")
    waiting = [asyncio.ensure_future(c.recv_async()) for c in conns]
    await asyncio.sleep(0.01)
    threading.Thread(target=hub.group_send, args=("g", "from a thread")).start()
    done = await asyncio.wait_for(asyncio.gather(*waiting), 5)
    assert {m.data for m in done} == {"from a thread"}


async def test_closing_a_connection_wakes_its_waiter(hub):
    conn = hub.open()
    waiter = asyncio.ensure_future(conn.recv_async())
    await asyncio.sleep(0.01)
    conn.close()
    with pytest.raises(channelbox.ConnectionClosed):
        await asyncio.wait_for(waiter, 5)


async def test_hub_close_wakes_waiters_and_removes_the_reader():
    hub = channelbox.Hub()
    conn = hub.open()
    waiter = asyncio.ensure_future(conn.recv_async())
    await asyncio.sleep(0.01)
    (dup, _), = hub._aio._readers.values()
    hub.close()
    with pytest.raises((channelbox.HubClosed, channelbox.ConnectionClosed)):
        await asyncio.wait_for(waiter, 5)
    with pytest.raises(OSError):
        os.fstat(dup)  # our duplicate fd is closed


async def test_a_cancelled_waiter_leaves_no_trace(hub):
    conn = hub.open()
    conn.join("g")
    waiter = asyncio.ensure_future(conn.recv_async())
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert hub._aio._waiters == {}
    hub.group_send("g", "after")
    assert (await asyncio.wait_for(conn.recv_async(), 5)).data == "after"


async def test_ttl_expiry_ends_async_iteration():
    with channelbox.Hub() as hub:
        conn = hub.open(ttl=1)
        got = await asyncio.wait_for(_collect(conn), 5)
        assert got == []
        assert conn.close_reason is channelbox.CloseReason.EXPIRED
        assert "expired" in conn.close_detail


async def _collect(conn):
    return [m async for m in conn]


def test_two_event_loops_in_two_threads_share_a_hub(hub):
    a, b = hub.open(), hub.open()
    a.join("g")
    b.join("g")
    results = {}

    def run(name, conn):
        async def main():
            results[name] = (await asyncio.wait_for(conn.recv_async(), 5)).data

        asyncio.run(main())

    threads = [threading.Thread(target=run, args=(n, c)) for n, c in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    import time

    time.sleep(0.1)
    hub.group_send("g", "both")
    for t in threads:
        t.join(10)
    assert results == {"a": "both", "b": "both"}


async def test_waiting_uses_no_thread_and_no_cpu(hub):
    import time

    conns = [hub.open() for _ in range(100)]
    for c in conns:
        c.join("quiet")
    threads = threading.active_count()
    waiting = [asyncio.ensure_future(c.recv_async()) for c in conns]
    await asyncio.sleep(0.01)
    cpu = time.process_time()
    await asyncio.sleep(0.3)
    assert time.process_time() - cpu < 0.05  # no polling, no busy loop
    assert threading.active_count() == threads  # no thread per connection
    hub.group_send("quiet", "wake")
    assert {m.data for m in await asyncio.wait_for(asyncio.gather(*waiting), 5)} == {"wake"}
