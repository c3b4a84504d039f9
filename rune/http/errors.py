"""HTTP errors: one JSON body shape for every failure.

``{"error": {"type": "invalid_request", "message": "...", "location": "[2].principal"}}``
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from rune.errors import RuneError

__all__ = ["HttpError", "error_response"]


class HttpError(RuneError):
    """An HTTP request RUNE refuses; rendered as ``status`` with the JSON error body."""

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        location: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.location = location
        self.headers = headers or {}


def error_response(
    status: int,
    type_: str,
    message: str,
    location: str = "",
    headers: dict[str, str] | None = None,
) -> web.Response:
    body: dict[str, Any] = {"type": type_, "message": message}
    if location:
        body["location"] = location
    return web.Response(
        status=status,
        body=orjson.dumps({"error": body}),
        content_type="application/json",
        headers=headers,
    )
