"""A client for the example hub's server API (``/api/*``), for application backends.

The hub (``examples/hub``) serves this API when started with ``--api-key KEY``
(or ``CHANNELBOX_API_KEY``); every call carries ``Authorization: apikey KEY``.
:class:`ServerApi` speaks it over HTTP with the standard library only
(:mod:`urllib.request`, :mod:`json`): no other package and no native call, so
it works the same against a hub on another machine::

    from channelbox import ServerApi

    api = ServerApi("http://127.0.0.1:8000", key="...")
    message_id = api.publish("lobby", "deploy finished", user="ci")
    api.dm("alice", "your order shipped", from_="shop")
    api.ban("lobby", "mallory", duration_s=3600)

Every failed call raises :class:`ServerApiError` with the HTTP status, the
hub's error ``code`` (``"unauthorized"``, ``"bad_request"``, ``"not_found"``,
``"too_large"``, ``"unavailable"``, ...) and its message. The protocol is in
``docs/PROTOCOL.md``, section "Server API".
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, List, Optional

__all__ = ["ServerApi", "ServerApiError"]


class ServerApiError(Exception):
    """A server API call failed.

    :attr:`status` is the HTTP status (``0`` when no answer came: the hub is
    unreachable or timed out), :attr:`code` the hub's error code
    (``"unreachable"`` without an answer, ``""`` for an answer that is not the
    hub's JSON error), :attr:`message` what went wrong, for people.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}" if code else f"{status}: {message}")
        self.status = status
        self.code = code
        self.message = message


class ServerApi:
    """The hub's server API at ``url`` (``http://host:port``), called with ``key``.

    ``timeout`` (seconds) bounds each call, connecting included. The object
    holds no connection between calls, so it needs no closing and may be
    shared by threads.
    """

    def __init__(self, url: str, key: str, timeout: float = 10.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"url must be http(s)://host[:port], got {url!r}")
        if not key:
            raise ValueError("key must be the hub's --api-key")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._authorization = f"apikey {key}"

    def __repr__(self) -> str:
        return f"ServerApi({self.url!r})"

    def publish(self, room: str, content: str, user: Optional[str] = None) -> int:
        """Sends ``content`` to ``room`` as a chat message; returns its id.

        The message is saved and delivered like one a member sent, shown as
        from ``user`` (default ``"system"``). It returns once saved.
        """
        body: Dict[str, Any] = {"room": room, "content": content}
        if user is not None:
            body["user"] = user
        return int(self._call("POST", "/api/publish", body)["id"])

    def dm(self, to: str, content: str, from_: Optional[str] = None) -> int:
        """Sends a direct message to user id ``to``; returns its id.

        It is from user id ``from_`` (default ``"system"``), saved in the
        conversation of the two and delivered to ``to``'s ``/dm`` sockets.
        """
        body: Dict[str, Any] = {"to": to, "content": content}
        if from_ is not None:
            body["from"] = from_
        return int(self._call("POST", "/api/dm", body)["id"])

    def disconnect(self, user: str) -> int:
        """Closes every socket of user id ``user`` (close code 4000).

        Returns how many sockets the hub that answered closed; with Redis the
        other hubs close theirs too, uncounted.
        """
        return int(self._call("POST", "/api/disconnect", {"user": user})["closed"])

    def ban(self, room: str, user: str, duration_s: Optional[int] = None) -> Dict[str, Any]:
        """Bans user id ``user`` from ``room``, for ``duration_s`` seconds or for good.

        The same as a moderator's ban: the room is told, the user's sockets in
        it close with 4003 and joins are refused while it lasts. Returns
        ``{"room", "user", "duration_s"}``.
        """
        body: Dict[str, Any] = {"user": user}
        if duration_s is not None:
            body["duration_s"] = duration_s
        return self._call("POST", f"/api/rooms/{_segment(room)}/ban", body)

    def history(
        self, room: str, limit: Optional[int] = None, before: Optional[int] = None
    ) -> List[Dict[str, Any]]:
        """The newest ``limit`` messages of ``room`` (default 50, at most 200).

        Only messages with an id below ``before`` when given, oldest first,
        each as the room's sockets got it (``id``, ``user``, ``content``,
        ``timestamp``, ...).
        """
        query = {k: v for k, v in (("limit", limit), ("before", before)) if v is not None}
        path = f"/api/rooms/{_segment(room)}/history"
        if query:
            path += "?" + urllib.parse.urlencode(query)
        return list(self._call("GET", path)["messages"])

    def presence(self) -> List[Dict[str, Any]]:
        """The users online, as ``/presence`` lists them: ``{"id", "username", "status"}``."""
        return list(self._call("GET", "/api/presence")["users"])

    def _call(self, method: str, path: str, body: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", self._authorization)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as e:
            raise _error_of(e.code, e.read()) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ServerApiError(0, "unreachable", f"{self.url}: {reason}") from e
        try:
            answer = json.loads(raw)
        except ValueError as e:
            raise ServerApiError(200, "", f"the answer is not JSON: {raw[:200]!r}") from e
        if not isinstance(answer, dict):
            raise ServerApiError(200, "", f"the answer is not a JSON object: {raw[:200]!r}")
        return answer


def _segment(value: str) -> str:
    """``value`` as one path segment (``/`` and everything else escaped)."""
    return urllib.parse.quote(value, safe="")


def _error_of(status: int, raw: bytes) -> ServerApiError:
    """The error of an HTTP answer: the hub's ``{"code", "detail"}`` when it is one."""
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = None
    if isinstance(answer, dict):
        code = answer.get("code") or answer.get("error") or ""
        detail = answer.get("detail") or ""
        if isinstance(code, str) and isinstance(detail, str):
            return ServerApiError(status, code, detail)
    text = raw[:200].decode("utf-8", "replace")
    return ServerApiError(status, "", text or "no body")
