"""The Hub: every method, good and bad input."""

import threading
import time

import pytest

import channelbox
from channelbox import Kind


def test_version_matches_the_library_and_the_crate():
    from pathlib import Path

    from channelbox._ffi import lib

    assert lib.cbx_version().decode() == channelbox.__version__
    cargo = Path(__file__).resolve().parents[3] / "Cargo.toml"
    if cargo.is_file():
        line = next(l for l in cargo.read_text().splitlines() if l.startswith("version"))
        assert line.split('"')[1] == channelbox.__version__


def test_config_keys_are_accepted_and_unknown_keys_refused():
    with channelbox.Hub(history_max_messages=3, slow_consumer="drop_oldest", queue_max_messages=5):
        pass
    with pytest.raises(channelbox.InvalidArgument, match="unknown field"):
        channelbox.Hub(history_max_mesages=3)
    with pytest.raises(channelbox.InvalidArgument):
        channelbox.Hub(slow_consumer="explode")
    with pytest.raises(TypeError):
        channelbox.Hub(history_max_messages=object())


def test_history_dir_keeps_history_across_hubs(tmp_path):
    with channelbox.Hub(history_dir=str(tmp_path), history_fsync=False) as hub:
        assert hub.group_send("g", "one", save_history=True).offset == 1
        assert hub.group_send("g", "two", save_history=True).offset == 2
        epoch = hub.history("g").epoch
    with channelbox.Hub(history_dir=str(tmp_path)) as hub:
        page = hub.history("g")
        assert page.epoch == epoch
        assert [(m.offset, m.data) for m in page.messages] == [(1, "one"), (2, "two")]
        assert hub.group_send("g", "three", save_history=True).offset == 3
    with channelbox.Hub(history_dir=str(tmp_path), history_commit_interval_ms=2) as hub:
        assert hub.group_send("g", "four", save_history=True).offset == 4
    with pytest.raises(channelbox.InvalidArgument, match="history_commit_interval_ms"):
        channelbox.Hub(history_commit_interval_ms=5000)
    with pytest.raises(channelbox.InvalidArgument):
        channelbox.Hub(history_fsync="yes")


def test_an_unopenable_history_store_raises_storage_error(tmp_path):
    (tmp_path / "history.redb").write_bytes(b"not a database" * 1000)
    with pytest.raises(channelbox.StorageError, match="history.redb") as info:
        channelbox.Hub(history_dir=str(tmp_path))
    assert isinstance(info.value, OSError)
    assert info.value.code == channelbox.StorageError.code == 7400


def test_group_send_reaches_every_member_with_group_and_offset(hub):
    alice, bob = hub.open(user="alice"), hub.open(user="bob")
    alice.join("chat_1")
    bob.join("chat_1")
    report = hub.group_send("chat_1", {"text": "hi"}, save_history=True)
    assert report == channelbox.SendReport(delivered=2, dropped=0, offset=1, disconnected=0)
    for conn in (alice, bob):
        m = conn.recv(timeout=1)
        assert (m.kind, m.data, m.group, m.offset) == (Kind.JSON, {"text": "hi"}, "chat_1", 1)
        assert abs(m.ts_ms / 1000 - time.time()) < 60
        assert m.raw == b'{"text":"hi"}'


def test_kind_is_inferred_from_the_payload(hub):
    conn = hub.open()
    conn.join("g")
    hub.group_send("g", b"\x00\xff")
    hub.group_send("g", "h\u00e9llo")
    hub.group_send("g", [1, 2])
    got = [(m.kind, m.data) for m in conn.recv_batch()]
    assert got == [(Kind.BINARY, b"\x00\xff"), (Kind.TEXT, "h\u00e9llo"), (Kind.JSON, [1, 2])]


def test_explicit_kinds(hub):
    conn = hub.open()
    conn.join("g")
    hub.group_send("g", '{"a": 1}', kind="json")
    hub.group_send("g", b"plain", kind=Kind.TEXT)
    hub.group_send("g", bytearray(b"xy"), kind=3)
    assert [m.data for m in conn.recv_batch()] == [{"a": 1}, "plain", b"xy"]


def test_unsaved_sends_have_offset_zero_and_offsets_count_per_group(hub):
    conn = hub.open()
    conn.join("a")
    conn.join("b")
    assert hub.group_send("a", 1).offset == 0
    assert hub.group_send("a", 2, save_history=True).offset == 1
    assert hub.group_send("b", 3, save_history=True).offset == 1
    assert hub.group_send("a", 4, save_history=True).offset == 2
    assert [(m.group, m.offset) for m in conn.recv_batch()] == [("a", 0), ("a", 1), ("b", 1), ("a", 2)]


def test_invalid_json_is_refused_and_nothing_is_delivered_or_saved(hub):
    conn = hub.open()
    conn.join("g")
    with pytest.raises(channelbox.InvalidJson) as info:
        hub.group_send("g", "{not json", kind="json", save_history=True)
    assert info.value.code_name == "CBX_INVALID_JSON"
    assert isinstance(info.value, ValueError)
    with pytest.raises(channelbox.InvalidJson):
        hub.group_send("g", {"x": float("nan")})
    assert conn.try_recv() is None
    assert hub.history("g").messages == []


def test_invalid_utf8_is_refused(hub):
    conn = hub.open()
    conn.join("g")
    with pytest.raises(channelbox.InvalidUtf8):
        hub.group_send("g", b"\xff\xfe", kind="text")
    with pytest.raises(channelbox.InvalidUtf8):
        hub.group_send("g", "\udcff")
    with pytest.raises(channelbox.InvalidUtf8):
        hub.group_add(conn, "bad\udcff")
    assert conn.try_recv() is None


def test_wrong_types_raise_type_error(hub):
    conn = hub.open()
    with pytest.raises(TypeError):
        hub.group_add(conn, 123)
    with pytest.raises(TypeError):
        hub.group_add("not a connection", "g")
    with pytest.raises(TypeError):
        hub.group_send("g", "text", kind=Kind.BINARY)
    with pytest.raises(TypeError):
        hub.group_send("g", {"a": object()})
    with pytest.raises(TypeError):
        hub.open(user=5)
    with pytest.raises(TypeError):
        hub.user_send(5, "x")
    with pytest.raises(TypeError):
        hub.open(ttl="forever")
    with pytest.raises(TypeError):
        hub.history_replace("g", "1", "x")
    with pytest.raises(TypeError):
        hub.history("g", since="1")
    with pytest.raises(TypeError):
        conn.recv(timeout="1")
    with pytest.raises(channelbox.InvalidArgument):
        hub.group_send("g", 1, kind="yaml")


def test_bad_names_and_sizes(hub):
    conn = hub.open()
    with pytest.raises(channelbox.InvalidArgument):
        hub.group_add(conn, "")
    with pytest.raises(channelbox.InvalidArgument):
        hub.group_add(conn, "a\0b")
    with pytest.raises(channelbox.TooLarge):
        hub.group_add(conn, "g" * 10_000)
    with channelbox.Hub(max_payload_bytes=10) as small:
        with pytest.raises(channelbox.TooLarge):
            small.group_send("g", b"x" * 11)


def test_unknown_connection_raises_no_such_connection(hub):
    with pytest.raises(channelbox.NoSuchConnection) as info:
        hub.group_add(424242, "g")
    assert isinstance(info.value, LookupError)
    conn = hub.open()
    conn_id = conn.id
    conn.close()
    with pytest.raises(channelbox.NoSuchConnection):
        hub.group_add(conn_id, "g")
    with pytest.raises(channelbox.NoSuchConnection):
        hub.connection_close(conn_id)
    with pytest.raises(channelbox.InvalidArgument):
        hub.group_add(-1, "g")


def test_a_released_connection_raises_connection_closed(hub):
    conn = hub.open()
    conn.close()
    conn.close()  # idempotent
    for call in (lambda: conn.join("g"), lambda: conn.recv(0), conn.recv_batch, conn.try_recv):
        with pytest.raises(channelbox.ConnectionClosed):
            call()


def test_closed_hub_raises_hub_closed_and_never_crashes():
    hub = channelbox.Hub()
    conn = hub.open()
    hub.close()
    hub.close()
    assert hub.closed
    for call in (
        lambda: hub.open(),
        lambda: hub.group_send("g", 1),
        lambda: hub.group_add(conn, "g"),
        hub.groups,
        hub.stats,
        hub.history,
        hub.close_all,
        lambda: conn.recv(0),
    ):
        with pytest.raises(channelbox.HubClosed):
            call()
    conn.close()  # releasing a connection of a closed hub is fine


def test_every_native_call_on_a_closed_hub_raises_hub_closed():
    hub = channelbox.Hub()
    conn = hub.open()
    hub.close()
    for call in (
        lambda: hub.open(),
        lambda: hub.connection_close(conn.id),
        lambda: hub.group_add(conn, "g"),
        lambda: hub.group_remove(conn, "g"),
        lambda: hub.group_send("g", 1),
        lambda: hub.user_send("alice", 1),
        lambda: hub.conn_send(conn, 1),
        hub.groups,
        hub.stats,
        hub.history,
        lambda: hub.history_json("g"),
        lambda: hub.history_replace("g", 1, 2),
        hub.history_flush,
        hub.groups_flush,
        hub.close_all,
        lambda: conn.recv(0),
        conn.recv_batch,
        conn.try_recv,
        lambda: conn.close_reason,
    ):
        with pytest.raises(channelbox.HubClosed, match="the hub is closed"):
            call()


def test_closing_the_hub_while_threads_call_it_never_frees_it_under_a_call():
    hub = channelbox.Hub()
    conn = hub.open()
    conn.join("g")
    outcomes = []

    def hammer():
        sent = 0
        try:
            while True:
                hub.group_send("g", sent)
                hub.stats()
                conn.recv_batch(8)
                sent += 1
        except channelbox.ChannelboxError as error:
            outcomes.append((sent, error))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    hub.close()
    for thread in threads:
        thread.join(5)
    assert not any(thread.is_alive() for thread in threads)
    assert len(outcomes) == 4
    assert all(isinstance(error, (channelbox.HubClosed, channelbox.ConnectionClosed)) for _, error in outcomes)
    assert sum(sent for sent, _ in outcomes) > 0


def test_recv_times_out_with_empty(hub):
    conn = hub.open()
    t0 = time.monotonic()
    with pytest.raises(channelbox.Empty) as info:
        conn.recv(timeout=0.05)
    assert isinstance(info.value, TimeoutError)
    assert time.monotonic() - t0 >= 0.04
    assert conn.try_recv() is None
    assert conn.recv_batch() == []


def test_blocking_recv_wakes_when_another_thread_sends(hub):
    conn = hub.open()
    conn.join("g")
    threading.Timer(0.05, lambda: hub.group_send("g", "late")).start()
    assert conn.recv(timeout=5).data == "late"


def test_close_hub_wakes_a_thread_blocked_in_recv():
    hub = channelbox.Hub()
    conn = hub.open()
    errors = []

    def receive():
        try:
            conn.recv()
        except channelbox.ChannelboxError as error:
            errors.append(error)

    thread = threading.Thread(target=receive)
    thread.start()
    time.sleep(0.05)
    hub.close()
    thread.join(5)
    assert not thread.is_alive()
    assert isinstance(errors[0], (channelbox.ConnectionClosed, channelbox.HubClosed))


def test_group_remove_and_groups_show_presence(hub):
    a1, a2, b = hub.open(user="alice"), hub.open(user="alice"), hub.open(user="bob")
    for c in (a1, a2, b):
        c.join("room")
    groups = hub.groups()
    assert groups == {"room": {"connections": sorted([a1.id, a2.id, b.id]), "users": ["alice", "bob"]}}
    hub.group_remove(b, "room")
    hub.group_remove(b, "room")  # not a member: nothing changes
    assert hub.groups()["room"]["users"] == ["alice"]
    a1.leave("room")
    a2.leave("room")
    assert hub.groups() == {}


def test_user_send_reaches_every_connection_of_the_user(hub):
    tab1, tab2, other = hub.open(user="alice"), hub.open(user="alice"), hub.open(user="bob")
    report = hub.user_send("alice", {"dm": 1})
    assert report.delivered == 2
    m1, m2 = tab1.recv(0), tab2.recv(0)
    assert m1.data == m2.data == {"dm": 1}
    assert m1.group is None and m1.offset == 0
    assert other.try_recv() is None
    assert hub.user_send("nobody", "x").delivered == 0


def test_direct_send_to_one_connection(hub):
    conn = hub.open()
    conn.send("just you")
    m = conn.recv(0)
    assert (m.data, m.group, m.offset) == ("just you", None, 0)


def test_history_newest_first_limit_since_and_all_groups(hub):
    for i in range(1, 8):
        hub.group_send("g", {"i": i}, save_history=True)
    hub.group_send("h", "text", save_history=True)
    hub.group_send("h", b"\x01\x02", save_history=True)
    page = hub.history("g", limit=3)
    assert [m.data["i"] for m in page.messages] == [5, 6, 7]
    assert (page.first_offset, page.last_offset, page.group) == (1, 7, "g")
    assert [m.offset for m in hub.history("g", since=5, limit=0).messages] == [6, 7]
    everything = hub.history()
    assert set(everything) == {"g", "h"}
    assert [m.data for m in everything["h"].messages] == ["text", b"\x01\x02"]
    assert hub.history("never").messages == []
    with pytest.raises(channelbox.InvalidArgument):
        hub.history("g", limit=-1)


def test_history_is_bounded_and_evicts_the_oldest():
    with channelbox.Hub(history_max_messages=3) as hub:
        for i in range(10):
            hub.group_send("g", i, save_history=True)
        page = hub.history("g", limit=0)
        assert [m.data for m in page.messages] == [7, 8, 9]
        assert page.first_offset == 8
    with channelbox.Hub(history_max_bytes=100) as hub:
        for i in range(100):
            hub.group_send("g", "x" * 10, save_history=True)
        assert len(hub.history("g", limit=0).messages) == 10
        assert hub.stats()["history_bytes"] == 100


def test_history_replace_and_missing_offset(hub):
    hub.group_send("g", {"v": 1}, save_history=True)
    hub.history_replace("g", 1, {"v": 2})
    assert hub.history("g").messages[0].data == {"v": 2}
    with pytest.raises(channelbox.NoSuchMessage):
        hub.history_replace("g", 99, {"v": 3})


def test_history_flush_changes_the_epoch(hub):
    hub.group_send("g", 1, save_history=True)
    hub.group_send("h", 1, save_history=True)
    epoch = hub.history("g").epoch
    hub.history_flush("g")
    page = hub.history("g")
    assert page.messages == [] and page.epoch != epoch
    assert len(hub.history("h").messages) == 1
    hub.history_flush()
    assert hub.history() == {}


def test_groups_flush_keeps_connections_and_history(hub):
    conn = hub.open()
    conn.join("g")
    hub.group_send("g", 1, save_history=True)
    hub.groups_flush()
    assert hub.groups() == {}
    assert hub.group_send("g", 2).delivered == 0
    assert len(hub.history("g").messages) == 1
    conn.join("g")
    assert hub.group_send("g", 3).delivered == 1


def test_close_all_drains_then_reports_closed(hub):
    conn = hub.open()
    conn.join("g")
    hub.group_send("g", "last words")
    hub.close_all()
    assert conn.recv(0).data == "last words"
    with pytest.raises(channelbox.ConnectionClosed) as info:
        conn.recv(0)
    assert info.value.close_reason is channelbox.CloseReason.HUB_CLOSED
    assert info.value.reason == info.value.close_detail == "hub closed all connections"
    assert conn.close_reason is channelbox.CloseReason.HUB_CLOSED
    assert conn.close_detail == "hub closed all connections"
    conn.close()


def test_slow_consumer_is_disconnected_and_the_group_keeps_flowing():
    with channelbox.Hub(queue_max_messages=5) as hub:
        slow, fast = hub.open(), hub.open()
        slow.join("g")
        fast.join("g")
        disconnected = 0
        for i in range(20):
            disconnected += hub.group_send("g", i).disconnected
            assert fast.recv(0).data == i
        assert disconnected == 1
        assert len(slow.recv_batch(100)) == 5
        with pytest.raises(channelbox.ConnectionClosed, match="slow consumer") as info:
            slow.recv_batch()
        assert info.value.close_reason is channelbox.CloseReason.SLOW_CONSUMER
        assert slow.close_reason is channelbox.CloseReason.SLOW_CONSUMER
        assert slow.close_detail.startswith("slow consumer: outbound queue full")
        assert fast.close_reason is None and fast.close_detail is None
        assert hub.stats()["slow_consumer_disconnects"] == 1


def test_ttl_closes_the_connection():
    with channelbox.Hub() as hub:
        conn = hub.open(ttl=1)
        with pytest.raises(channelbox.ConnectionClosed, match="expired") as info:
            conn.recv(timeout=5)
        assert info.value.close_reason is channelbox.CloseReason.EXPIRED
        with pytest.raises(channelbox.InvalidArgument):
            hub.open(ttl=-1)


def test_close_reason_is_none_while_open_and_closed_by_host_once_released(hub):
    conn = hub.open()
    assert (conn.close_reason, conn.close_detail) == (None, None)
    conn.close()
    assert conn.close_reason is channelbox.CloseReason.CLOSED_BY_HOST
    assert conn.close_detail == "closed by the host"
    with pytest.raises(channelbox.ConnectionClosed) as info:
        conn.recv(0)
    assert info.value.close_reason is channelbox.CloseReason.CLOSED_BY_HOST
    assert str(channelbox.CloseReason.SLOW_CONSUMER) == "slow_consumer"


def test_stats_count_sends_and_deliveries(hub):
    a, b = hub.open(user="a"), hub.open(user="b")
    a.join("g")
    b.join("g")
    hub.group_send("g", 1, save_history=True)
    hub.user_send("a", 2)
    stats = hub.stats()
    assert stats["connections"] == 2 and stats["users"] == 2 and stats["groups"] == 1
    assert stats["group_sends"] == 1 and stats["direct_sends"] == 1
    assert stats["deliveries"] == 3 and stats["history_messages"] == 1
    assert stats["queued_messages"] == 3


def test_recv_batch_respects_its_maximum(hub):
    conn = hub.open()
    conn.join("g")
    for i in range(10):
        hub.group_send("g", i)
    assert [m.data for m in conn.recv_batch(4)] == [0, 1, 2, 3]
    assert conn.recv(0).data == 4
    assert [m.data for m in conn.recv_batch()] == [5, 6, 7, 8, 9]
    with pytest.raises(channelbox.InvalidArgument):
        conn.recv_batch(0)


def test_connection_context_manager_releases_it(hub):
    with hub.open() as conn:
        conn.join("g")
    assert conn.closed
    assert hub.groups() == {}
    assert hub.stats()["connections"] == 0


def test_a_forgotten_connection_is_released(hub):
    import gc

    hub.open().join("g")
    gc.collect()
    assert hub.stats()["connections"] == 0
    assert hub.groups() == {}
