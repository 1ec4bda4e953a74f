"""OpenAI-style HTTP errors: `{"error": {"message", "type", "param", "code"}}`.

Bad input raises `ApiError` (a 4xx); anything else that escapes is a bug and becomes an
OpenAI-style 500 in `serving.asgi_guard`.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from autotune.errors import AutotuneError

ErrorType = Literal[
    "invalid_request_error",
    "authentication_error",
    "not_found_error",
    "rate_limit_error",
    "server_error",
    "service_unavailable_error",
]


class ApiError(AutotuneError):
    """An error answered to an HTTP client; `status` is the HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: ErrorType = "invalid_request_error",
        param: str | None = None,
        code: str | int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, dict[str, str | int | None]]:
        return error_body(self.message, type=self.type, param=self.param, code=self.code)


def error_body(
    message: str, *, type: str, param: str | None = None, code: str | int | None = None
) -> dict[str, dict[str, str | int | None]]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_bytes(message: str, *, type: str, param: str | None = None, code: str | int | None = None) -> bytes:
    return json.dumps(error_body(message, type=type, param=param, code=code)).encode()


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


_TYPE_NAMES = frozenset({"str", "int", "float", "bool", "list", "dict", "none", "function-after", "literal"})


def _param_of(loc: tuple[int | str, ...]) -> str | None:
    """('messages', 0, 'content', 'list[tagged-union[...]]', 0, 'image_url', 'image_url', 'url')
    -> 'messages[0].content[0].image_url.url' (pydantic's union branch and tag names dropped)."""
    parts: list[str] = []
    items = [item for item in loc if not (isinstance(item, str) and ("[" in item or item in _TYPE_NAMES))]
    for position, item in enumerate(items):
        if isinstance(item, int):
            parts.append(f"[{item}]")
            continue
        if position + 1 < len(items) and items[position + 1] == item:
            continue  # a discriminator tag followed by the field of the same name
        parts.append(("." if parts else "") + item)
    return "".join(parts) or None


def from_validation_error(error: Any) -> ApiError:
    """A pydantic ValidationError of a request body -> a 400 naming the first bad parameter."""
    details = error.errors(include_url=False)
    if any(item["type"] == "json_invalid" for item in details):
        first = next(item for item in details if item["type"] == "json_invalid")
        return ApiError(400, f"Request body is not valid JSON: {first['msg']}", code="invalid_json")
    primary = max(details, key=lambda item: len(_param_of(tuple(item["loc"])) or ""))  # the most specific
    param = _param_of(tuple(primary["loc"]))
    messages: list[str] = []
    for item in details:
        if _param_of(tuple(item["loc"])) == param and item["msg"] not in messages:
            messages.append(item["msg"])
    if primary["type"] == "extra_forbidden":
        messages = ["Unrecognized request argument (not supported)"]
    return ApiError(400, f"{param or 'body'}: {' or '.join(messages)}", param=param, code="invalid_value")
