"""The ChannelBox chat tutorial app (seed protocol) on Nexios 3.12.3, with channelbox.ChannelBox.

Adapted from shared/bench/peers/nexios/app.py: the only change is the import of
Channel and ChannelBox, which come from channelbox instead of
nexios.websockets.channels. Served by uvicorn in tests/test_tutorial_app.py.

Endpoints (the tutorial's):
  ws /chat/{room_id}  join -> room gets a "system" message (saved), client gets "history" (last 50);
                      each {"message": ...} is broadcast as {"type":"message","user","content","timestamp"} (saved);
                      leave -> room gets "<user> left the chat" (saved).
  ws /presence        online/offline status broadcast to everyone on /presence.
  ws /dm/{user_id}    direct messages to every /dm connection of user_id.

Auth: HS256 JWT (secret from $JWT_SECRET, default "bench-secret"), from the
`Authorization: Bearer` header or `?token=`. It is verified with Nexios' own
JWT helper (nexios.auth.backends.jwt.decode_jwt); see AUTH_NOTE below.
"""
import os
from datetime import datetime, timezone

from nexios import NexiosApp
from nexios.auth.backends.jwt import decode_jwt
from nexios.websockets import WebSocket, WebSocketDisconnect

from channelbox import Channel, ChannelBox

SECRET = os.environ.get("JWT_SECRET", "bench-secret")
HISTORY_REPLAY = 50

# AUTH_NOTE: Nexios' AuthenticationMiddleware + JWTAuthBackend is an HTTP
# middleware (it authenticates `Request`s); on this version it does not set
# scope["user"] for websocket routes, so the handler verifies the token itself
# with the same Nexios helper the backend uses.
app = NexiosApp()


def now() -> str:
    return datetime.now(timezone.utc).isoformat()


def user_from(ws: WebSocket):
    token = None
    auth = ws.headers.get("authorization")
    if auth and auth.startswith("Bearer "):
        token = auth[7:]
    if token is None:
        token = ws.query_params.get("token")
    if not token:
        return None
    try:
        claims = decode_jwt(token, SECRET)
    except ValueError:
        return None
    return claims.get("username") or claims.get("sub")


@app.ws_route("/chat/{room_id}")
async def chat(ws: WebSocket):
    user = user_from(ws)
    if user is None:
        await ws.close(code=4401)  # before accept: the upgrade is refused with HTTP 403
        return
    await ws.accept()
    group = f"chat_{ws.path_params['room_id']}"
    channel = Channel(websocket=ws, payload_type="json", expires=3600)
    await ChannelBox.add_channel_to_group(channel, group_name=group)
    await ChannelBox.group_send(
        group_name=group,
        payload={"type": "system", "message": f"{user} joined the chat", "timestamp": now()},
        save_history=True,
    )
    history = await ChannelBox.show_history(group)
    await ws.send_json({"type": "history", "messages": [m.payload for m in history[-HISTORY_REPLAY:]]})
    try:
        while True:
            data = await ws.receive_json()
            await ChannelBox.group_send(
                group_name=group,
                payload={"type": "message", "user": user, "content": data.get("message", ""), "timestamp": now()},
                save_history=True,
            )
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        await ChannelBox.remove_channel_from_group(channel, group_name=group)
        try:
            await ChannelBox.group_send(
                group_name=group,
                payload={"type": "system", "message": f"{user} left the chat", "timestamp": now()},
                save_history=True,
            )
        except Exception:
            pass  # ChannelBox lets a send to a closed socket escape (WebSocketDisconnect)


PRESENCE = "presence"


@app.ws_route("/presence")
async def presence(ws: WebSocket):
    user = user_from(ws)
    if user is None:
        await ws.close(code=4401)
        return
    await ws.accept()
    channel = Channel(websocket=ws, payload_type="json", expires=3600)
    await ChannelBox.add_channel_to_group(channel, group_name=PRESENCE)
    await ChannelBox.group_send(PRESENCE, {"type": "status", "user": user, "status": "online", "timestamp": now()})
    try:
        while True:
            data = await ws.receive_json()
            await ChannelBox.group_send(
                PRESENCE, {"type": "status", "user": user, "status": data.get("status", "online"), "timestamp": now()}
            )
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        await ChannelBox.remove_channel_from_group(channel, group_name=PRESENCE)
        try:
            await ChannelBox.group_send(PRESENCE, {"type": "status", "user": user, "status": "offline", "timestamp": now()})
        except Exception:
            pass


@app.ws_route("/dm/{user_id}")
async def dm(ws: WebSocket):
    user = user_from(ws)
    if user is None:
        await ws.close(code=4401)
        return
    await ws.accept()
    target = ws.path_params["user_id"]
    mine = Channel(websocket=ws, payload_type="json", expires=3600)
    await ChannelBox.add_channel_to_group(mine, group_name=f"dm_{user}")
    try:
        while True:
            data = await ws.receive_json()
            await ChannelBox.group_send(
                f"dm_{target}",
                {"type": "direct_message", "from": user, "content": data.get("message", ""), "timestamp": now()},
                save_history=True,
            )
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        await ChannelBox.remove_channel_from_group(mine, group_name=f"dm_{user}")


@app.get("/healthz")
async def healthz(req, res):
    return res.json({"ok": True})
