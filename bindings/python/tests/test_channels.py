"""The Nexios drop-in: ChannelBox and Channel with fake and real websockets."""

import asyncio
import inspect
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime

import pytest

import channelbox
from channelbox import (
    Channel,
    ChannelAddStatusEnum,
    ChannelBox,
    ChannelMessageDC,
    ChannelRemoveStatusEnum,
    GroupSendStatusEnum,
    PayloadTypeEnum,
)

from fakes import (
    FailingLaterWebSocket,
    GatedWebSocket,
    HangingWebSocket,
    RaisingWebSocket,
    RecordingWebSocket,
    SlowWebSocket,
    nexios_websocket,
)


async def join(group, ws=None, payload_type="json", expires=None):
    channel = Channel(ws if ws is not None else RecordingWebSocket(), payload_type, expires)
    await ChannelBox.add_channel_to_group(channel, group_name=group)
    return channel


# ------------------------------------------------------------ parity with Nexios


def test_the_module_exports_what_nexios_exports():
    import nexios.websockets.channels as nexios_channels

    for name in (
        "ChannelBox",
        "Channel",
        "ChannelAddStatusEnum",
        "ChannelRemoveStatusEnum",
        "GroupSendStatusEnum",
        "PayloadTypeEnum",
        "ChannelMessageDC",
        "BaseHistoryManager",
        "InMemoryHistoryManager",
    ):
        assert hasattr(nexios_channels, name)
        assert hasattr(channelbox, name)
        assert hasattr(channelbox.channels, name)


def test_signatures_match_nexios():
    from nexios.websockets.channels import Channel as NexiosChannel
    from nexios.websockets.channels import ChannelBox as NexiosBox

    for name, member in vars(NexiosBox).items():
        if name.startswith("__") or not isinstance(member, classmethod):
            continue
        ours = inspect.getattr_static(ChannelBox, name)
        assert isinstance(ours, classmethod), name
        theirs_fn, ours_fn = member.__func__, ours.__func__
        assert inspect.iscoroutinefunction(theirs_fn) == inspect.iscoroutinefunction(ours_fn), name
        theirs_sig, ours_sig = inspect.signature(theirs_fn), inspect.signature(ours_fn)
        assert [(p.name, p.default, p.kind) for p in theirs_sig.parameters.values()] == [
            (p.name, p.default, p.kind) for p in ours_sig.parameters.values()
        ], name
    for name in ("__init__", "_send", "_is_expired"):
        theirs, ours = getattr(NexiosChannel, name), getattr(Channel, name)
        assert [(p.name, p.default) for p in inspect.signature(theirs).parameters.values()] == [
            (p.name, p.default) for p in inspect.signature(ours).parameters.values()
        ], name
    assert ChannelBox.HISTORY_SIZE == NexiosBox.HISTORY_SIZE
    assert isinstance(ChannelBox.CHANNEL_GROUPS, dict)


def test_enums_match_nexios():
    from nexios.websockets import utils as nexios_utils

    for ours in (ChannelAddStatusEnum, ChannelRemoveStatusEnum, GroupSendStatusEnum, PayloadTypeEnum):
        theirs = getattr(nexios_utils, ours.__name__)
        assert [(m.name, m.value) for m in ours] == [(m.name, m.value) for m in theirs]


def test_history_size_comes_from_the_environment():
    env = dict(os.environ, CHANNEL_BOX_HISTORY_SIZE="4096")
    out = subprocess.run(
        [sys.executable, "-c", "import channelbox; print(channelbox.ChannelBox.HISTORY_SIZE, "
         "channelbox.ChannelBox.HISTORY_MANAGER.history_size)"],
        env=env, capture_output=True, text=True, check=True,
    )
    assert out.stdout.split() == ["4096", "4096"]


# ------------------------------------------------------------ groups


async def test_add_reports_whether_the_group_was_new():
    first = Channel(RecordingWebSocket(), "json")
    second = Channel(RecordingWebSocket(), "json")
    assert await ChannelBox.add_channel_to_group(first, "room") is ChannelAddStatusEnum.CHANNEL_ADDED
    assert await ChannelBox.add_channel_to_group(second, "room") is ChannelAddStatusEnum.CHANNEL_EXIST
    groups = await ChannelBox.show_groups()
    assert list(groups) == ["room"]
    assert list(groups["room"]) == [first, second]
    assert groups["room"][first] is ...
    assert await ChannelBox.add_channel_to_group(first) is ChannelAddStatusEnum.CHANNEL_ADDED
    assert "default" in await ChannelBox.show_groups()


async def test_remove_statuses():
    a = await join("room")
    b = await join("room")
    stranger = Channel(RecordingWebSocket(), "json")
    assert await ChannelBox.remove_channel_from_group(a, "room") is ChannelRemoveStatusEnum.CHANNEL_REMOVED
    # Nexios raises UnboundLocalError here.
    assert await ChannelBox.remove_channel_from_group(stranger, "room") is ChannelRemoveStatusEnum.CHANNEL_DOES_NOT_EXIST
    assert await ChannelBox.remove_channel_from_group(b, "room") is ChannelRemoveStatusEnum.GROUP_REMOVED
    assert await ChannelBox.remove_channel_from_group(b, "room") is ChannelRemoveStatusEnum.GROUP_DOES_NOT_EXIST
    assert await ChannelBox.show_groups() == {}


async def test_flush_groups_forgets_every_group():
    await join("a")
    await join("b")
    await ChannelBox.flush_groups()
    assert await ChannelBox.show_groups() == {}


async def test_empty_group_name_is_refused():
    with pytest.raises(ValueError):
        await ChannelBox.add_channel_to_group(Channel(RecordingWebSocket(), "json"), "")
    with pytest.raises(ValueError):
        await ChannelBox.group_send("", {"x": 1})


def test_channel_accepts_any_object_with_the_three_send_methods():
    class Duck:
        async def send_json(self, data):
            pass

        async def send_text(self, data):
            pass

        async def send_bytes(self, data):
            pass

    channel = Channel(Duck(), "json", expires=10)
    assert isinstance(channel.uuid, uuid.UUID) and channel.created <= time.time()
    assert Channel(Duck(), PayloadTypeEnum.TEXT).payload_type == "text"
    with pytest.raises(TypeError):
        Channel(object(), "json")
    with pytest.raises(ValueError):
        Channel(Duck(), "xml")
    with pytest.raises(TypeError):
        Channel(Duck(), "json", expires="soon")
    assert "payload_type='json'" in repr(channel)


# ------------------------------------------------------------ sending


async def test_each_payload_type_uses_its_send_method():
    j = await join("g", payload_type="json")
    t = await join("g", payload_type="text")
    b = await join("g", payload_type="bytes")
    payload = {"hello": "world"}
    assert await ChannelBox.group_send("g", payload) is GroupSendStatusEnum.GROUP_SEND
    assert j.websocket.sent == [("json", payload)]
    assert j.websocket.sent[0][1] is payload  # non-Nexios objects get send_json(payload) itself
    assert t.websocket.sent == [("text", payload)]
    assert b.websocket.sent == [("bytes", payload)]
    assert await ChannelBox.group_send("nobody", payload) is GroupSendStatusEnum.NO_SUCH_GROUP


async def test_nexios_websockets_get_the_same_frame_send_json_would_send():
    payload = {"type": "message", "content": "h\u00e9llo \u2603", "n": [1, 2.5, None]}
    ours = nexios_websocket()
    reference = nexios_websocket()
    await join("g", ours)
    await ChannelBox.group_send("g", payload)
    await reference.send_json(payload)
    assert ours.frames == reference.frames
    assert ours.frames[0] == {"type": "websocket.send", "text": json.dumps(payload, separators=(",", ":"), ensure_ascii=False)}


async def test_a_json_payload_is_encoded_once_per_send(monkeypatch):
    calls = []
    real = channelbox.channels._dumps

    def counting(payload):
        calls.append(1)
        return real(payload)

    monkeypatch.setattr(channelbox.channels, "_dumps", counting)
    sockets = [nexios_websocket() for _ in range(50)]
    for ws in sockets:
        await join("g", ws)
    await ChannelBox.group_send("g", {"x": 1}, save_history=True)
    assert len(calls) == 1
    assert all(len(ws.frames) == 1 for ws in sockets)


async def test_a_closed_nexios_websocket_is_removed_not_fatal():
    from nexios.websockets.base import WebSocketState

    gone = nexios_websocket()
    gone.application_state = WebSocketState.DISCONNECTED
    alive = nexios_websocket()
    await join("g", gone)
    await join("g", alive)
    assert await ChannelBox.group_send("g", {"n": 1}) is GroupSendStatusEnum.GROUP_SEND
    assert len(alive.frames) == 1
    assert [c.websocket for c in (await ChannelBox.show_groups())["g"]] == [alive]


async def test_an_asgi_send_that_fails_with_oserror_marks_the_socket_disconnected():
    from nexios.websockets.base import WebSocketState

    broken = nexios_websocket(fail=ConnectionResetError("peer reset"))
    alive = nexios_websocket()
    await join("g", broken)
    await join("g", alive)
    await ChannelBox.group_send("g", {"n": 1})
    assert broken.application_state is WebSocketState.DISCONNECTED
    assert len(alive.frames) == 1


async def test_a_socket_that_raises_does_not_stop_the_others_and_leaves_its_groups():
    before = RecordingWebSocket("before")
    bad = RaisingWebSocket(RuntimeError("boom"))
    after = RecordingWebSocket("after")
    for ws in (before, bad, after):
        await join("room", ws)
    bad_channel = next(c for c in (await ChannelBox.show_groups())["room"] if c.websocket is bad)
    await ChannelBox.add_channel_to_group(bad_channel, "other")
    await ChannelBox.add_channel_to_group(Channel(after, "json"), "other")
    assert await ChannelBox.group_send("room", {"n": 1}) is GroupSendStatusEnum.GROUP_SEND
    assert before.sent == after.sent == [("json", {"n": 1})]
    groups = await ChannelBox.show_groups()
    assert all(c.websocket is not bad for members in groups.values() for c in members)
    await ChannelBox.group_send("room", {"n": 2})
    assert bad.attempts == 1


async def test_exceptions_other_than_runtime_error_are_contained_too():
    from nexios.websockets import WebSocketDisconnect

    for error in (WebSocketDisconnect(1006), OSError("reset"), ValueError("odd")):
        ChannelBox.CHANNEL_GROUPS = {}
        ok = RecordingWebSocket()
        await join("g", RaisingWebSocket(error))
        await join("g", ok)
        await ChannelBox.group_send("g", "x")
        assert ok.sent == [("json", "x")]


async def test_a_socket_that_never_returns_does_not_delay_the_others():
    ChannelBox.SEND_TIMEOUT = 0.2
    stuck = HangingWebSocket()
    others = [RecordingWebSocket(str(i)) for i in range(5)]
    await join("room", stuck)
    for ws in others:
        await join("room", ws)
    t0 = time.perf_counter()
    for i in range(3):
        await ChannelBox.group_send("room", {"n": i})
    assert time.perf_counter() - t0 < 0.15
    assert all(ws.sent == [("json", {"n": i}) for i in range(3)] for ws in others)
    assert stuck.started == 1  # later messages wait behind its first send, in order
    await asyncio.sleep(0.4)
    groups = await ChannelBox.show_groups()
    assert [c.websocket for c in groups["room"]] == others
    assert stuck.cancelled == 1 and stuck.closed  # timed out, cancelled, close attempted
    await ChannelBox.group_send("room", {"n": 3})
    assert stuck.started == 1


async def test_a_slow_socket_gets_every_message_in_order():
    slow = SlowWebSocket()
    fast = RecordingWebSocket()
    await join("g", slow)
    await join("g", fast)
    for i in range(10):
        await ChannelBox.group_send("g", i)
    assert len(fast.sent) == 10
    assert len(slow.sent) < 10
    for _ in range(100):
        if len(slow.sent) == 10:
            break
        await asyncio.sleep(0.01)
    assert slow.sent == [("json", i) for i in range(10)]
    assert len((await ChannelBox.show_groups())["g"]) == 2


async def test_a_suspended_send_keeps_its_place_before_a_later_send_to_the_same_socket():
    gated = GatedWebSocket()
    await join("g", gated)
    await ChannelBox.group_send("g", 1)
    assert gated.sent == []  # waiting for the gate, in a task of its own
    gated.gate.set()  # before that task ever ran
    await asyncio.create_task(gated.send_json(2))
    assert gated.sent == [("json", 1), ("json", 2)]


async def test_a_socket_that_fails_after_suspending_is_removed_and_not_closed():
    failing = FailingLaterWebSocket()
    ok = RecordingWebSocket()
    await join("g", failing)
    await join("g", ok)
    await ChannelBox.group_send("g", 1)
    await asyncio.sleep(0.01)
    assert [c.websocket for c in (await ChannelBox.show_groups())["g"]] == [ok]
    assert ok.sent == [("json", 1)] and not failing.closed


async def test_a_socket_with_too_many_messages_waiting_is_dropped():
    ChannelBox.MAX_PENDING = 5
    stuck = HangingWebSocket()
    ok = RecordingWebSocket()
    stuck_channel = await join("g", stuck)
    await join("g", ok)
    for i in range(10):
        await ChannelBox.group_send("g", i)
    assert len(ok.sent) == 10
    assert [c.websocket for c in (await ChannelBox.show_groups())["g"]] == [ok]
    await asyncio.sleep(0.01)
    assert stuck.cancelled == 1  # its unfinished send was cancelled
    assert stuck_channel._busy is None and not stuck_channel._backlog


async def test_joins_and_leaves_during_a_broadcast_are_safe():
    newcomer = Channel(RecordingWebSocket("newcomer"), "json")
    victims = []

    class Meddler(RecordingWebSocket):
        async def send_json(self, data, mode="text"):
            # Runs while group_send walks the group.
            await ChannelBox.add_channel_to_group(newcomer, "room")
            for v in victims:
                await ChannelBox.remove_channel_from_group(v, "room")
            await asyncio.sleep(0)
            self.sent.append(("json", data))

    await join("room", Meddler("meddler"))
    victims.extend([await join("room") for _ in range(3)])
    survivor = await join("room")
    await ChannelBox.group_send("room", "hello")
    assert survivor.websocket.sent == [("json", "hello")]
    await asyncio.sleep(0.01)
    await ChannelBox.group_send("room", "again")
    assert newcomer.websocket.sent == [("json", "again")]


async def test_created_is_refreshed_by_a_send():
    channel = await join("g")
    channel.created = 0
    await ChannelBox.group_send("g", 1)
    assert time.time() - channel.created < 5


async def test_expired_channels_are_swept_safely():
    fresh = await join("a", expires=3600)
    for _ in range(50):
        old = await join("a", expires=1)
        old.created = time.time() - 10
        await ChannelBox.add_channel_to_group(old, "b")
    keep = await join("b")
    await ChannelBox.remove_channel_from_group(keep, "b")  # triggers the sweep
    groups = await ChannelBox.show_groups()
    assert list(groups) == ["a"] and list(groups["a"]) == [fresh]
    assert await fresh._is_expired() is False


async def test_close_all_connections_closes_each_socket_once_without_waiting_on_a_stuck_one():
    ChannelBox.SEND_TIMEOUT = 0.2
    a, b = RecordingWebSocket("a"), RecordingWebSocket("b")
    stuck = HangingWebSocket()
    for ws in (a, b, stuck):
        await join("one", Channel(ws, "json").websocket)
    await ChannelBox.add_channel_to_group(next(iter(ChannelBox.CHANNEL_GROUPS["one"])), "two")
    t0 = time.perf_counter()
    await ChannelBox.close_all_connections()
    assert time.perf_counter() - t0 < 1
    assert a.closed and b.closed and stuck.closed
    assert await ChannelBox.show_groups() == {}


# ------------------------------------------------------------ history


async def test_show_history_is_a_list_of_entries_oldest_first():
    await join("chat")
    for i in range(60):
        await ChannelBox.group_send("chat", {"i": i}, save_history=True)
    history = await ChannelBox.show_history("chat")
    assert isinstance(history, list)
    assert all(isinstance(m, ChannelMessageDC) for m in history)
    assert [m.payload["i"] for m in history[-50:]] == list(range(10, 60))
    assert len({m.uuid for m in history}) == 60  # each entry its own id
    assert all(isinstance(m.created, datetime) and m.created.tzinfo for m in history)
    assert [m.offset for m in history] == list(range(1, 61))
    again = await ChannelBox.show_history("chat")
    assert [m.uuid for m in again] == [m.uuid for m in history]  # stable across reads


async def test_history_is_saved_even_without_channels_and_keeps_payload_types():
    assert await ChannelBox.group_send("empty", "text", save_history=True) is GroupSendStatusEnum.NO_SUCH_GROUP
    await ChannelBox.group_send("empty", b"\x00bin", save_history=True)
    await ChannelBox.group_send("empty", [1, {"a": None}], save_history=True)
    assert [m.payload for m in await ChannelBox.show_history("empty")] == ["text", b"\x00bin", [1, {"a": None}]]
    assert await ChannelBox.show_history("unknown") == []


async def test_show_history_without_a_name_gives_every_group():
    await ChannelBox.group_send("a", 1, save_history=True)
    await ChannelBox.group_send("b", 2, save_history=True)
    everything = await ChannelBox.show_history()
    assert {k: [m.payload for m in v] for k, v in everything.items()} == {"a": [1], "b": [2]}


async def test_history_is_bounded_and_evicts_the_oldest_instead_of_wiping():
    ChannelBox.set_history_manager(channelbox.InMemoryHistoryManager(history_size=1000))
    for i in range(200):
        await ChannelBox.group_send("g", {"i": i, "pad": "x" * 80}, save_history=True)
        history = await ChannelBox.show_history("g")
        assert history[-1].payload["i"] == i  # never wiped
    assert 5 <= len(history) <= 12
    assert [m.payload["i"] for m in history] == list(range(200 - len(history), 200))


async def test_history_by_count_and_age():
    manager = channelbox.InMemoryHistoryManager(history_max_messages=3)
    ChannelBox.set_history_manager(manager)
    for i in range(10):
        await ChannelBox.group_send("g", i, save_history=True)
    assert [m.payload for m in await ChannelBox.show_history("g")] == [7, 8, 9]


async def test_flush_history():
    await ChannelBox.group_send("a", 1, save_history=True)
    await ChannelBox.group_send("b", 1, save_history=True)
    await ChannelBox.show_history("a")
    await ChannelBox.flush_history("a")
    assert await ChannelBox.show_history("a") == []
    assert len(await ChannelBox.show_history("b")) == 1
    await ChannelBox.group_send("a", 2, save_history=True)
    assert [m.payload for m in await ChannelBox.show_history("a")] == [2]
    await ChannelBox.flush_history()
    assert await ChannelBox.show_history() == {}


async def test_a_custom_history_manager_is_used():
    saved = []

    class Recorder(channelbox.BaseHistoryManager):
        async def save_message(self, group_name, message):
            saved.append((group_name, message.payload))

        async def get_history(self, group_name=None):
            return [m for g, m in saved if g == group_name]

        async def flush_history(self, group_name=None):
            saved.clear()

    ChannelBox.set_history_manager(Recorder())
    await ChannelBox.group_send("g", {"a": 1}, save_history=True)
    assert await ChannelBox.show_history("g") == [{"a": 1}]
    ChannelBox.set_history_manager(channelbox.NoOpHistoryManager())
    await ChannelBox.group_send("g", {"a": 2}, save_history=True)
    assert await ChannelBox.show_history("g") == []
    assert await ChannelBox.show_history() == {}


async def test_a_payload_too_large_for_history_is_still_delivered():
    ChannelBox.set_history_manager(channelbox.InMemoryHistoryManager(history_size=100))
    ws = RecordingWebSocket()
    await join("g", ws)
    await ChannelBox.group_send("g", "y" * 500, save_history=True)
    assert ws.sent == [("json", "y" * 500)]
    assert await ChannelBox.show_history("g") == []


def test_the_in_memory_manager_saves_encoded_payloads_and_refuses_quietly(caplog):
    manager = channelbox.InMemoryHistoryManager(history_size=1000)
    assert manager.save_payload("g", {"a": 1}) == 1
    assert manager.save_payload("g", '{"b":2}', channelbox.Kind.JSON) == 2  # JSON text, kept as it is
    assert manager.save_payload("g", "plain") == 3
    assert manager.save_payload("g", b"\x00") == 4
    assert manager.save_payload("g", float("nan")) == 0  # not JSON: logged, not kept
    assert manager.save_payload("g", "x" * 2000) == 0  # larger than the whole history
    assert manager.save_payload("g", "\ud800") == 0  # not UTF-8
    assert caplog.text.count("not saved to history") == 3
    assert [m.payload for m in asyncio.run(manager.get_history("g"))] == [{"a": 1}, {"b": 2}, "plain", b"\x00"]


def test_channel_message_defaults_are_per_entry():
    a, b = ChannelMessageDC(payload="a"), ChannelMessageDC(payload="b")
    assert a.uuid != b.uuid
    assert a.created.tzinfo is not None


async def test_odd_group_names_behave_like_dict_keys():
    ws = RecordingWebSocket()
    await join(7, ws)
    assert await ChannelBox.group_send(7, "x", save_history=True) is GroupSendStatusEnum.GROUP_SEND
    assert [m.payload for m in await ChannelBox.show_history(7)] == ["x"]
    assert await ChannelBox.show_history("nul\0name") == []
    await ChannelBox.group_send("nul\0name", "y", save_history=True)  # delivered nowhere, not kept, no error
    await ChannelBox.flush_history("nul\0name")


async def test_a_payload_that_cannot_be_encoded_is_the_callers_error_and_drops_nobody():
    plain = RecordingWebSocket()
    nexios_ws = nexios_websocket()
    await join("g", plain)
    await join("g", nexios_ws)
    with pytest.raises(TypeError):
        await ChannelBox.group_send("g", {"when": object()})
    assert len((await ChannelBox.show_groups())["g"]) == 2
