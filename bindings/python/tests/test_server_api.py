"""channelbox.ServerApi against a real example hub process on 127.0.0.1.

The hub binary is ``CHANNELBOX_HUB_BIN`` when set, else what
``cargo build -p channelbox-hub --example hub`` builds (a no-op when it is up
to date; no network once the workspace's crates are fetched). Every effect is
observed the way a user would see it: over the hub's WebSockets.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import jwt
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

import channelbox
from channelbox import ServerApi, ServerApiError

ROOT = Path(__file__).resolve().parents[3]
SECRET = "python-test-secret-0123456789abcdef"
KEY = "python-test-api-key"


def _hub_binary() -> str:
    given = os.environ.get("CHANNELBOX_HUB_BIN")
    if given:
        return given
    if not (ROOT / "examples" / "hub" / "Cargo.toml").is_file() or shutil.which("cargo") is None:
        pytest.fail("set CHANNELBOX_HUB_BIN to the example hub binary (no source tree or cargo here)")
    built = subprocess.run(
        ["cargo", "build", "--quiet", "-p", "channelbox-hub", "--example", "hub", "--message-format=json"],
        cwd=ROOT,
        check=True,
        stdout=subprocess.PIPE,
        timeout=1800,
    )
    for line in built.stdout.decode().splitlines():
        record = json.loads(line)
        target = record.get("target", {})
        if record.get("reason") == "compiler-artifact" and target.get("name") == "hub" and record.get("executable"):
            return record["executable"]
    pytest.fail("cargo built no `hub` executable")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningHub:
    def __init__(self, url: str) -> None:
        self.url = url
        self.ws_url = url.replace("http://", "ws://")

    def token(self, sub: str, username: str | None = None) -> str:
        claims = {"sub": sub, "username": username or sub, "exp": int(time.time()) + 3600}
        return jwt.encode(claims, SECRET, algorithm="HS256")

    def ws(self, path: str, sub: str, username: str | None = None):
        return connect(f"{self.ws_url}{path}?token={self.token(sub, username)}", open_timeout=10)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    binary = _hub_binary()
    port = _free_port()
    data = tmp_path_factory.mktemp("hub-data")
    env = dict(os.environ, CHANNELBOX_API_KEY=KEY, CHANNELBOX_JWT_SECRET=SECRET)
    args = [binary, "--port", str(port), "--data-dir", str(data), "--history-store", "memory"]
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the hub did not start (exit status {process.poll()})")
                time.sleep(0.05)
        yield RunningHub(url)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def api(hub):
    return ServerApi(hub.url, KEY, timeout=10)


def _recv_type(ws, kind: str) -> dict:
    """The next frame of type ``kind`` (at most 100 frames, 10 s each)."""
    for _ in range(100):
        frame = json.loads(ws.recv(timeout=10))
        if frame.get("type") == kind:
            return frame
    raise AssertionError(f"no {kind} frame")


def _close_code(ws) -> int:
    """The close code the hub ends ``ws`` with (frames before it skipped)."""
    with pytest.raises(ConnectionClosed) as closed:
        for _ in range(100):
            ws.recv(timeout=10)
    return closed.value.rcvd.code


def test_the_client_is_exported_beside_the_hub():
    assert channelbox.ServerApi is ServerApi
    assert "ServerApi" in channelbox.__all__ and "ServerApiError" in channelbox.__all__


def test_publish_reaches_a_member_and_the_history(hub, api):
    with hub.ws("/chat/py-lobby", "alice") as alice:
        _recv_type(alice, "history")
        message_id = api.publish("py-lobby", "hello from the backend", user="billing")
        live = _recv_type(alice, "message")
    assert live["id"] == message_id
    assert (live["user"], live["content"]) == ("billing", "hello from the backend")
    saved = [m for m in api.history("py-lobby") if m["id"] == message_id]
    assert saved == [live]
    default_id = api.publish("py-lobby", "no user given")
    by_id = {m["id"]: m for m in api.history("py-lobby")}
    assert by_id[default_id]["user"] == "system"


def test_history_pages_with_limit_and_before(api):
    ids = [api.publish("py-log", f"entry {n}") for n in range(5)]
    assert [m["content"] for m in api.history("py-log", limit=2)] == ["entry 3", "entry 4"]
    older = api.history("py-log", limit=2, before=ids[3])
    assert [m["id"] for m in older] == ids[1:3]
    assert api.history("py-nobody-here") == []


def test_dm_reaches_the_user(hub, api):
    with hub.ws("/dm/anyone", "bob") as bob:
        _recv_type(bob, "history")
        dm_id = api.dm("bob", "your order shipped", from_="shop")
        live = _recv_type(bob, "direct_message")
        assert (live["id"], live["from_id"], live["to"], live["content"]) == (dm_id, "shop", "bob", "your order shipped")
        api.dm("bob", "welcome")
        assert _recv_type(bob, "direct_message")["from"] == "system"


def test_disconnect_closes_every_socket_of_the_user_with_4000(hub, api):
    with hub.ws("/chat/py-room", "carol") as room, hub.ws("/presence", "carol") as presence:
        _recv_type(room, "history")
        _recv_type(presence, "users")
        assert api.disconnect("carol") == 2
        assert _close_code(room) == 4000
        assert _close_code(presence) == 4000
    assert api.disconnect("carol") == 0


def test_ban_closes_the_user_and_refuses_the_rejoin(hub, api):
    with hub.ws("/chat/py-market", "eve") as eve:
        _recv_type(eve, "history")
        answer = api.ban("py-market", "eve", duration_s=600)
        assert answer == {"room": "py-market", "user": "eve", "duration_s": 600}
        assert _close_code(eve) == 4003
    with pytest.raises(InvalidStatus) as refused:
        hub.ws("/chat/py-market", "eve")
    assert refused.value.response.status_code == 403
    assert api.ban("py-market", "frank")["duration_s"] is None


def test_presence_lists_a_connected_user(hub, api):
    with hub.ws("/presence", "u-7", "Grace") as grace:
        _recv_type(grace, "users")
        users = api.presence()
    assert {"id": "u-7", "username": "Grace", "status": "online"} in users


def test_a_wrong_key_raises_unauthorized(hub):
    with pytest.raises(ServerApiError) as e:
        ServerApi(hub.url, "not-the-key").presence()
    assert (e.value.status, e.value.code) == (401, "unauthorized")
    assert e.value.message


def test_bad_input_raises_the_hubs_code(api):
    cases = [
        (lambda: api.publish("a/b", "x"), 404, "not_found"),
        (lambda: api.publish("py-room", ""), 400, "bad_request"),
        (lambda: api.publish("py-room", "x" * (64 * 1024 + 1)), 413, "too_large"),
        (lambda: api.ban("py-room", "eve", duration_s=-5), 400, "bad_request"),
        (lambda: api.history("py-room", limit=0), 400, "bad_request"),
        (lambda: api.dm("", "x"), 400, "bad_request"),
    ]
    for call, status, code in cases:
        with pytest.raises(ServerApiError) as e:
            call()
        assert (e.value.status, e.value.code) == (status, code), e.value


def test_an_unreachable_hub_raises_with_status_0():
    api = ServerApi(f"http://127.0.0.1:{_free_port()}", KEY, timeout=2)
    with pytest.raises(ServerApiError) as e:
        api.presence()
    assert (e.value.status, e.value.code) == (0, "unreachable")


def test_bad_arguments_are_refused_before_any_call():
    for url, key, timeout in [("ftp://x", KEY, 1), ("http://", KEY, 1), ("http://h", "", 1), ("http://h", KEY, 0)]:
        with pytest.raises(ValueError):
            ServerApi(url, key, timeout=timeout)
