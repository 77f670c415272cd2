"""Fake websocket objects for the ChannelBox tests."""

import asyncio


class RecordingWebSocket:
    """Records what it is sent; never blocks."""

    def __init__(self, name="ws"):
        self.name = name
        self.sent = []
        self.closed = False

    async def send_json(self, data, mode="text"):
        self.sent.append(("json", data))

    async def send_text(self, data):
        self.sent.append(("text", data))

    async def send_bytes(self, data):
        self.sent.append(("bytes", data))

    async def close(self, code=1000, reason=None):
        self.closed = True

    def __repr__(self):
        return f"<{type(self).__name__} {self.name}>"


class RaisingWebSocket(RecordingWebSocket):
    """Every send raises."""

    def __init__(self, error=None, name="raising"):
        super().__init__(name)
        self.error = error or RuntimeError("socket is gone")
        self.attempts = 0

    async def send_json(self, data, mode="text"):
        self.attempts += 1
        raise self.error

    send_text = send_bytes = send_json


class HangingWebSocket(RecordingWebSocket):
    """Every send waits forever (a client whose TCP window is shut)."""

    def __init__(self, name="hanging"):
        super().__init__(name)
        self.started = 0
        self.cancelled = 0

    async def send_json(self, data, mode="text"):
        self.started += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    send_text = send_bytes = send_json

    async def close(self, code=1000, reason=None):
        self.closed = True
        await asyncio.Event().wait()  # closing hangs too


class SlowWebSocket(RecordingWebSocket):
    """Every send yields to the loop a few times before it completes."""

    async def send_json(self, data, mode="text"):
        await asyncio.sleep(0.005)
        self.sent.append(("json", data))


class GatedWebSocket(RecordingWebSocket):
    """Every send waits for ``gate`` (as uvicorn's first sends wait for the handshake)."""

    def __init__(self, name="gated"):
        super().__init__(name)
        self.gate = asyncio.Event()

    async def send_json(self, data, mode="text"):
        await self.gate.wait()
        self.sent.append(("json", data))


class FailingLaterWebSocket(RecordingWebSocket):
    """Every send yields to the loop once, then raises."""

    async def send_json(self, data, mode="text"):
        await asyncio.sleep(0)
        raise ConnectionResetError("reset after a while")


def nexios_websocket(sent=None, fail=None):
    """A real Nexios WebSocket, accepted, over an ASGI send that records frames."""
    from nexios.websockets import WebSocket
    from nexios.websockets.base import WebSocketState

    frames = sent if sent is not None else []

    async def receive():
        return {"type": "websocket.connect"}

    async def send(message):
        if fail is not None:
            raise fail
        frames.append(message)

    ws = WebSocket({"type": "websocket", "path": "/", "headers": [], "query_string": b""}, receive, send)
    ws.client_state = WebSocketState.CONNECTED
    ws.application_state = WebSocketState.CONNECTED
    ws.frames = frames
    return ws
