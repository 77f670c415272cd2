"""The seed's tutorial chat app, as a real Nexios app on channelbox, over real websockets.

tutorial_app.py is served by uvicorn on 127.0.0.1 (a socket bound to port 0 by
the test and handed to uvicorn with --fd) in a subprocess, and driven with the
`websockets` client.
"""

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

SECRET = "tutorial-test-secret-0123456789abcdef"
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def server():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    env = dict(os.environ, JWT_SECRET=SECRET)
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tutorial_app:app", "--fd", str(listener.fileno()),
         "--log-level", "warning", "--ws", "websockets"],
        cwd=HERE, env=env, pass_fds=[listener.fileno()],
    )
    listener.close()
    base = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://{base}/healthz", timeout=1) as response:
                if response.status == 200:
                    break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("the tutorial app did not start")
            time.sleep(0.1)
    yield f"ws://{base}"
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


def token(user):
    return jwt.encode({"sub": user, "username": user}, SECRET, algorithm="HS256")


def url(server, path, user):
    return f"{server}{path}?token={token(user)}"


async def recv_json(ws, timeout=5):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_until(ws, predicate, timeout=5):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        left = deadline - asyncio.get_running_loop().time()
        message = await recv_json(ws, max(left, 0.01))
        if predicate(message):
            return message


async def test_a_room_broadcasts_joins_messages_and_leaves(server):
    async with connect(url(server, "/chat/lobby", "alice")) as alice:
        joined = await recv_json(alice)
        assert (joined["type"], joined["message"]) == ("system", "alice joined the chat")
        history = await recv_json(alice)
        assert history["type"] == "history" and history["messages"][-1]["message"] == "alice joined the chat"
        async with connect(url(server, "/chat/lobby", "bob")) as bob:
            joined = await recv_until(alice, lambda m: m.get("message") == "bob joined the chat")
            assert joined["type"] == "system"
            history = await recv_until(bob, lambda m: m["type"] == "history")
            assert history["messages"][-1]["message"] == "bob joined the chat"
            await alice.send(json.dumps({"message": "hello bob"}))
            for ws in (alice, bob):
                m = await recv_until(ws, lambda m: m["type"] == "message")
                assert (m["user"], m["content"]) == ("alice", "hello bob")
                assert "timestamp" in m
        left = await recv_until(alice, lambda m: m.get("message") == "bob left the chat")
        assert left["type"] == "system"


async def test_a_newcomer_gets_the_last_50_messages_oldest_first(server):
    async with connect(url(server, "/chat/history-room", "carol")) as carol:
        await recv_until(carol, lambda m: m["type"] == "history")
        for i in range(60):
            await carol.send(json.dumps({"message": f"m{i}"}))
        await recv_until(carol, lambda m: m.get("content") == "m59")
        async with connect(url(server, "/chat/history-room", "dave")) as dave:
            history = await recv_until(dave, lambda m: m["type"] == "history")
            messages = history["messages"]
            assert len(messages) == 50
            assert [m["content"] for m in messages[:-1]] == [f"m{i}" for i in range(11, 60)]
            assert messages[-1] == {**messages[-1], "type": "system", "message": "dave joined the chat"}


async def test_presence_reports_online_and_offline(server):
    async with connect(url(server, "/presence", "erin")) as erin:
        await recv_until(erin, lambda m: m["user"] == "erin" and m["status"] == "online")
        async with connect(url(server, "/presence", "frank")) as frank:
            await recv_until(erin, lambda m: m["user"] == "frank" and m["status"] == "online")
            await frank.send(json.dumps({"status": "away"}))
            await recv_until(erin, lambda m: m["user"] == "frank" and m["status"] == "away")
        await recv_until(erin, lambda m: m["user"] == "frank" and m["status"] == "offline")


async def test_direct_messages_reach_every_connection_of_the_user(server):
    async with connect(url(server, "/dm/grace", "heidi")) as heidi1, connect(url(server, "/dm/grace", "heidi")) as heidi2:
        async with connect(url(server, "/dm/heidi", "grace")) as grace:
            await asyncio.sleep(0.2)  # heidi's two sockets have joined dm_heidi
            await grace.send(json.dumps({"message": "psst"}))
            for ws in (heidi1, heidi2):
                m = await recv_json(ws)
                assert (m["type"], m["from"], m["content"]) == ("direct_message", "grace", "psst")


async def test_a_missing_or_bad_token_is_refused(server):
    for bad in (f"{server}/chat/lobby", f"{server}/chat/lobby?token=not-a-jwt",
                f"{server}/chat/lobby?token=" + jwt.encode({"sub": "x"}, "wrong-secret-0123456789abcdef012345", algorithm="HS256")):
        with pytest.raises(InvalidStatus) as info:
            async with connect(bad):
                pass
        assert info.value.response.status_code == 403


async def test_the_bearer_header_is_accepted(server):
    async with connect(f"{server}/chat/header-room", additional_headers={"Authorization": f"Bearer {token('ivan')}"}) as ivan:
        m = await recv_json(ivan)
        assert m == {**m, "type": "system", "message": "ivan joined the chat"}


async def test_a_client_that_vanishes_does_not_break_the_room(server):
    async with connect(url(server, "/chat/vanish", "judy")) as judy:
        await recv_until(judy, lambda m: m["type"] == "history")
        ghost = await connect(url(server, "/chat/vanish", "ghost"))
        await recv_until(judy, lambda m: m.get("message") == "ghost joined the chat")
        await recv_until(ghost, lambda m: m["type"] == "history")  # its handler is in its receive loop
        ghost.transport.abort()  # no close handshake
        await judy.send(json.dumps({"message": "still here"}))
        await recv_until(judy, lambda m: m.get("content") == "still here")
        await recv_until(judy, lambda m: m.get("message") == "ghost left the chat")
