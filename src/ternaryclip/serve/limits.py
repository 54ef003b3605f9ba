"""Request body size, checked before the body is read (``Content-Length``) and while it streams."""

from __future__ import annotations

import json

from .errors import ApiError


class BodyTooLarge(ApiError):
    def __init__(self, limit: int):
        super().__init__(413, f"request body larger than the limit of {limit} bytes (--max-body-mb)")


class BodySizeLimit:
    """ASGI middleware: a declared oversize body gets 413 unread; a chunked one fails once it passes the limit."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            status, message = (
                (413, BodyTooLarge(self.max_bytes).message) if declared.isdigit() else (400, "bad Content-Length")
            )
            return await _send_error(send, status, message)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)  # the app's error handler answers 413
            return message

        await self.app(scope, limited_receive, send)


async def _send_error(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
