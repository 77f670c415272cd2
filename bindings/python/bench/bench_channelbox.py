"""Benchmarks of the channelbox Python package.

1. ChannelBox.group_send of a JSON payload to N channels (default 1000) whose
   websockets are real Nexios WebSocket objects (accepted, over a no-op ASGI
   send), channelbox's drop-in side by side with Nexios' own ChannelBox in the
   same process, without and with save_history. Target: >= 5x Nexios.
2. Hub fan-out drained from Python: one group of N connections, M messages
   sent per round, every connection drained with cbx_conn_recv_batch(256).
   "count" frees each batch with cbx_messages_free and counts (the raw rate a
   Python host gets); "messages" goes through Connection.recv_batch, which
   builds a Message object per delivery. Target: >= 2M deliveries/s (count).
3. The same hub read in asyncio: one task per connection awaiting
   recv_async, woken through the hub's ready fd (M/10 messages per round).

Usage:
  python bindings/python/bench/bench_channelbox.py [--channels 1000] [--seconds 2] [--repeat 3]
                                                   [--messages 200] [--json] [--markdown]
Prints a table (and a markdown section with --markdown, one JSON line with --json).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import platform
import statistics
import sys
import time
from ctypes import byref, c_size_t, c_void_p
from importlib.metadata import version

import channelbox
from channelbox._ffi import CBX_EMPTY, lib

PAYLOAD = {
    "type": "message",
    "user": "alice",
    "content": "hello world " * 4,
    "timestamp": "2026-01-01T00:00:00+00:00",
}


def nexios_websocket():
    """A real, accepted Nexios WebSocket whose ASGI send does nothing."""
    from nexios.websockets import WebSocket
    from nexios.websockets.base import WebSocketState

    async def receive():
        return {"type": "websocket.connect"}

    async def send(message):
        pass

    ws = WebSocket({"type": "websocket", "path": "/", "headers": [], "query_string": b""}, receive, send)
    ws.client_state = WebSocketState.CONNECTED
    ws.application_state = WebSocketState.CONNECTED
    return ws


async def group_send_rate(box, channel_cls, n, seconds, save_history):
    box.CHANNEL_GROUPS = {}
    await box.flush_history()
    for _ in range(n):
        await box.add_channel_to_group(channel_cls(websocket=nexios_websocket(), payload_type="json"), group_name="bench")
    for _ in range(3):
        await box.group_send(group_name="bench", payload=PAYLOAD, save_history=save_history)
    calls = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while True:
        await box.group_send(group_name="bench", payload=PAYLOAD, save_history=save_history)
        calls += 1
        if calls % 4 == 0 and time.perf_counter() >= deadline:
            break
    dt = time.perf_counter() - t0
    box.CHANNEL_GROUPS = {}
    await box.flush_history()
    return calls * n / dt


def fanout_rate(n, messages, seconds, mode):
    payload = json.dumps(PAYLOAD, separators=(",", ":")).encode()
    with channelbox.Hub(queue_max_messages=max(messages, 1), queue_max_bytes=max(messages * len(payload), 1)) as hub:
        conns = [hub.open() for _ in range(n)]
        for c in conns:
            c.join("bench")
        ids = [c.id for c in conns]
        slots = (c_void_p * 256)()
        count = c_size_t()
        count_ref = byref(count)
        recv_batch, free = lib.cbx_conn_recv_batch, lib.cbx_messages_free
        send_time = drain_time = 0.0
        delivered = 0
        t_end = time.perf_counter() + seconds
        with hub._native as ptr:
            while time.perf_counter() < t_end:
                t0 = time.perf_counter()
                for _ in range(messages):
                    lib.cbx_group_send(ptr, b"bench", 1, payload, len(payload), 0, None)
                t1 = time.perf_counter()
                got = 0
                if mode == "count":
                    for cid in ids:
                        # Nothing sends while we drain, so a short batch means empty.
                        while recv_batch(ptr, cid, slots, 256, count_ref) == 0:
                            k = count.value
                            got += k
                            free(slots, k)
                            if k < 256:
                                break
                else:
                    for c in conns:
                        while True:
                            batch = c.recv_batch(256)
                            if not batch:
                                break
                            got += len(batch)
                t2 = time.perf_counter()
                assert got == n * messages, (got, n * messages)
                delivered += got
                send_time += t1 - t0
                drain_time += t2 - t1
        stats = hub.stats()
        assert stats["dropped"] == 0 and stats["slow_consumer_disconnects"] == 0
    return {
        "deliveries": delivered,
        "deliveries_per_s": delivered / (send_time + drain_time),
        "drain_per_s": delivered / drain_time,
        "send_per_s": delivered / send_time,
    }


async def async_fanout_rate(n, messages, seconds):
    """Every connection read by its own task with ``async for`` (the ready-fd reader)."""
    with channelbox.Hub(queue_max_messages=max(messages, 1), queue_max_bytes=1 << 30) as hub:
        conns = [hub.open() for _ in range(n)]
        for c in conns:
            c.join("bench")
        delivered = 0
        elapsed = 0.0
        t_end = time.perf_counter() + seconds
        while time.perf_counter() < t_end:
            async def take(conn):
                got = 0
                while got < messages:
                    await conn.recv_async()
                    got += 1
                return got

            tasks = [asyncio.ensure_future(take(c)) for c in conns]
            await asyncio.sleep(0)  # every task is waiting
            t0 = time.perf_counter()
            for _ in range(messages):
                hub.group_send("bench", PAYLOAD)
            delivered += sum(await asyncio.gather(*tasks))
            elapsed += time.perf_counter() - t0
    return {"deliveries": delivered, "deliveries_per_s": delivered / elapsed}


def median(runs, key=None):
    if key is None:
        return statistics.median(runs)
    return sorted(runs, key=lambda r: r[key])[len(runs) // 2]


def machine():
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "channelbox": channelbox.__version__,
        "nexios": version("nexios"),
        "loadavg_at_start": round(os.getloadavg()[0], 2),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--channels", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--repeat", type=int, default=3, help="runs per variant; the median is reported")
    ap.add_argument("--messages", type=int, default=1000, help="fan-out: messages per round")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args()

    import nexios.websockets.channels as nexios_channels

    results = {"machine": machine(), "group_send": {}, "fanout": {}}
    for hist in (False, True):
        ours, theirs = [], []
        for _ in range(a.repeat):
            theirs.append(asyncio.run(group_send_rate(nexios_channels.ChannelBox, nexios_channels.Channel, a.channels, a.seconds, hist)))
            ours.append(asyncio.run(group_send_rate(channelbox.ChannelBox, channelbox.Channel, a.channels, a.seconds, hist)))
        name = "save_history" if hist else "no history"
        results["group_send"][name] = {"nexios": median(theirs), "channelbox": median(ours), "ratio": median(ours) / median(theirs)}
    for mode in ("count", "messages"):
        runs = [fanout_rate(a.channels, a.messages, a.seconds, mode) for _ in range(a.repeat)]
        results["fanout"][mode] = median(runs, "deliveries_per_s")
    runs = [asyncio.run(async_fanout_rate(a.channels, a.messages // 10 or 1, a.seconds)) for _ in range(a.repeat)]
    results["asyncio"] = median(runs, "deliveries_per_s")

    m = results["machine"]
    print(f"channelbox {m['channelbox']} vs Nexios {m['nexios']}; Python {m['python']}; {m['cpu']} x{m['cpus']}; "
          f"kernel {m['kernel']}; load average {m['loadavg_at_start']}; "
          f"median of {a.repeat} x {a.seconds}s; {a.channels} channels/connections")
    print(f"\nChannelBox.group_send, JSON, real Nexios WebSockets over a no-op ASGI send (deliveries/s)")
    print(f"{'variant':<14} {'Nexios':>12} {'channelbox':>12} {'ratio':>7}")
    for name, r in results["group_send"].items():
        print(f"{name:<14} {r['nexios']:>12,.0f} {r['channelbox']:>12,.0f} {r['ratio']:>6.1f}x")
    print(f"\nHub fan-out drained from Python, recv_batch(256), {a.messages} messages per round")
    print(f"{'drain':<10} {'deliveries/s':>14} {'drain only/s':>14} {'send only/s':>14}")
    for mode, r in results["fanout"].items():
        print(f"{mode:<10} {r['deliveries_per_s']:>14,.0f} {r['drain_per_s']:>14,.0f} {r['send_per_s']:>14,.0f}")
    print(f"\nasyncio: one task per connection awaiting recv_async, {a.messages // 10 or 1} messages per round: "
          f"{results['asyncio']['deliveries_per_s']:,.0f} deliveries/s")
    if a.markdown:
        print()
        print("| benchmark | Nexios 3.12.3 | channelbox | ratio |")
        print("| --- | ---: | ---: | ---: |")
        for name, r in results["group_send"].items():
            print(f"| `ChannelBox.group_send`, {name}, deliveries/s | {r['nexios']:,.0f} | {r['channelbox']:,.0f} | {r['ratio']:.1f}x |")
        print()
        print("| Hub fan-out, drained from Python | deliveries/s (send + drain) | drain only | send only |")
        print("| --- | ---: | ---: | ---: |")
        for mode, r in results["fanout"].items():
            label = "count (`cbx_conn_recv_batch` + `cbx_messages_free`)" if mode == "count" else "`Connection.recv_batch` (Message objects)"
            print(f"| {label} | {r['deliveries_per_s']:,.0f} | {r['drain_per_s']:,.0f} | {r['send_per_s']:,.0f} |")
        print()
        print(f"asyncio, one task per connection (`await conn.recv_async()`): "
              f"{results['asyncio']['deliveries_per_s']:,.0f} deliveries/s")
    if a.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
