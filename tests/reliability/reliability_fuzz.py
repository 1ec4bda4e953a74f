"""Hypothesis strategies for HTTP requests to `autotune serve`: mostly chat-shaped, often wrong.

Every request is a `FuzzRequest` (method, path, headers, body bytes). The mix: chat bodies whose
fields take valid values, wrong types, out-of-range numbers or unknown keys; arbitrary JSON; raw bytes;
image parts with broken data URLs, decompression-bomb headers and forbidden URLs; other routes and
methods; missing, wrong and odd Authorization headers. Host names are IP literals or `localhost` so
that no request waits on DNS.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st
from PIL import Image

ROUTES = ("/v1/chat/completions", "/v1/models", "/health", "/metrics", "/autotune/config")
PATH_CHARACTERS = "abcdefghijklmnopqrstuvwxyzABC0123456789-._~/%:@!$&'()*+,;="
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD")


@dataclass(frozen=True)
class FuzzRequest:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    authorized: bool = True  # carries the right API key


def _image(fmt: str, size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (30, 120, 200)).save(buffer, fmt)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG signature and IHDR claiming width x height, with no pixel data (a bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


GOOD_IMAGES = (
    data_url(_image("PNG", (64, 48))),
    data_url(_image("JPEG", (300, 200)), "image/jpeg"),
    data_url(_image("GIF", (8, 8)), "image/gif"),
)
FORBIDDEN_HOSTS = (
    "127.0.0.1", "127.1", "0.0.0.0", "0", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",
    "100.64.0.1", "[::1]", "[::ffff:127.0.0.1]", "[fe80::1]", "[fd00::1]", "224.0.0.1", "localhost",
    "2130706433", "0x7f000001", "017700000001",
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=10,
)


image_urls = st.one_of(
    st.sampled_from(GOOD_IMAGES),
    st.binary(max_size=200).map(data_url),  # random bytes: not an image
    st.tuples(st.integers(1, 200_000), st.integers(1, 200_000)).map(lambda wh: data_url(png_header_only(*wh))),
    st.sampled_from(GOOD_IMAGES).map(lambda url: url[: len(url) // 2]),  # truncated
    st.sampled_from(
        [
            "data:image/png;base64,!!!!",
            "data:image/png,plain",
            "data:text/html;base64,PGh0bWw+",
            "data:",
            "data:image/png;base64,",
            "file:///etc/passwd",
            "ftp://127.0.0.1/x.png",
            "gopher://127.0.0.1:6379/_INFO",
            "http://user:pw@127.0.0.1/x.png",
            "http://[::1",
            "http://127.0.0.1:99999/x.png",
            "javascript:alert(1)",
            "/etc/passwd",
            "x.png",
        ]
    ),
    st.tuples(
        st.sampled_from(("http", "https")), st.sampled_from(FORBIDDEN_HOSTS), st.text(max_size=20)
    ).map(lambda parts: f"{parts[0]}://{parts[1]}/{parts[2]}"),
    st.text(max_size=40),
)

valid_content = st.one_of(
    st.text(max_size=300),
    st.lists(
        st.one_of(
            st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=200)}),
            st.fixed_dictionaries(
                {"type": st.just("image_url"), "image_url": st.fixed_dictionaries(
                    {"url": st.sampled_from(GOOD_IMAGES)}, optional={"detail": st.sampled_from(["auto", "low", "high"])}
                )}
            ),
        ),
        min_size=1,
        max_size=2,
    ),
)
valid_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant"]), "content": valid_content},
    optional={"name": st.text(max_size=10)},
)
VALID_OPTIONAL: dict[str, st.SearchStrategy[Any]] = {
    "stream": st.booleans(),
    "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans()}),
    "max_tokens": st.integers(1, 40),
    "max_completion_tokens": st.integers(1, 40),
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0.01, 1),
    "seed": st.integers(-(2**63), 2**63),
    "ignore_eos": st.booleans(),
    "n": st.just(1),
    "stop": st.one_of(st.text(max_size=5), st.lists(st.text(max_size=5), max_size=3)),
    "presence_penalty": st.floats(-2, 2),
    "frequency_penalty": st.floats(-2, 2),
    "user": st.text(max_size=10),
    "top_k": st.integers(-1, 100),
    "min_tokens": st.integers(0, 4),
    "repetition_penalty": st.floats(0.1, 2),
}

# Values that break the schema or its ranges, by field (any JSON value is tried for every field too).
text_part = st.fixed_dictionaries({"type": st.just("text"), "text": json_values})
image_part = st.fixed_dictionaries(
    {"type": st.just("image_url"), "image_url": st.one_of(
        st.fixed_dictionaries({"url": image_urls}, optional={"detail": json_values}), json_values
    )}
)
odd_part = st.fixed_dictionaries({"type": st.one_of(st.sampled_from(["video_url", "input_audio", "image"]), json_values)})
broken_messages = st.one_of(
    st.just([]),
    st.lists(
        st.fixed_dictionaries(
            {"role": st.one_of(st.sampled_from(["tool", "developer", "function", "", "USER"]), json_values),
             "content": st.one_of(st.lists(st.one_of(text_part, image_part, odd_part), max_size=3), json_values)},
            optional={"name": json_values, "tool_call_id": json_values, "extra": json_values},
        ),
        min_size=1,
        max_size=3,
    ),
    st.lists(st.fixed_dictionaries({"role": st.just("user"), "content": st.lists(image_part, min_size=1, max_size=3)}),
             min_size=1, max_size=2),
    json_values,
)
small_ints = st.integers(min_value=-3, max_value=40)
big_ints = st.sampled_from([0, -1, 2**31, 2**63, 10**30, -(10**30)])
edge_numbers = st.sampled_from([-1e308, -2.0001, -0.0, 1e-320, 2.0001, 1e308, 0, -1])
BROKEN_OPTIONAL: dict[str, st.SearchStrategy[Any]] = {
    "model": json_values,
    "messages": broken_messages,
    "max_tokens": big_ints,
    "max_completion_tokens": big_ints,
    "temperature": edge_numbers,
    "top_p": edge_numbers,
    "n": st.sampled_from([0, 2, -1]),
    "presence_penalty": edge_numbers,
    "frequency_penalty": edge_numbers,
    "logprobs": st.just(True),
    "repetition_penalty": edge_numbers,
    "min_tokens": st.just(-1),
    "tools": json_values,
    "response_format": json_values,
    "stream_options": json_values,
}


@st.composite
def chat_bodies(draw: st.DrawFn, model_name: str) -> dict[str, Any]:
    """A valid chat request (about half the time), or one with 1-3 fields broken."""
    body: dict[str, Any] = {"model": model_name, "messages": draw(st.lists(valid_message, min_size=1, max_size=3))}
    for name in sorted(draw(st.sets(st.sampled_from(sorted(VALID_OPTIONAL)), max_size=5))):
        body[name] = draw(VALID_OPTIONAL[name])
    if body.get("ignore_eos") and "max_tokens" not in body and "max_completion_tokens" not in body:
        body["max_tokens"] = draw(st.integers(1, 40))  # the fuzz is about input, not generation length
    if draw(st.booleans()):
        return body
    names = sorted({*VALID_OPTIONAL, *BROKEN_OPTIONAL})
    for name in sorted(draw(st.sets(st.sampled_from(names), min_size=1, max_size=3))):
        strategies = [json_values] + ([BROKEN_OPTIONAL[name]] * 3 if name in BROKEN_OPTIONAL else [])
        body[name] = draw(st.one_of(*strategies))
    if draw(st.integers(0, 5)) == 0:
        body[draw(st.text(min_size=1, max_size=12))] = draw(json_values)
    if draw(st.integers(0, 9)) == 0:
        del body[draw(st.sampled_from(["model", "messages"]))]
    return body


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value).encode()


raw_bodies = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    st.sampled_from(
        [
            b"",
            b"{",
            b"null",
            b"[]",
            b'{"model": "x", "messages": [',
            b'{"messages": [{"role": "user", "content": "\\ud800"}]}',
            b'{"max_tokens": NaN}',
            b'{"max_tokens": 1e999}',
            b"\xff\xfe{\x00}\x00",
            b'{"a":' * 2000 + b"1" + b"}" * 2000,  # deep nesting
            b"[" * 100_000,
        ]
    ),
)

authorization = st.one_of(
    st.just("none"), st.just("wrong"), st.just("basic"), st.just("prefix"), st.just("longer"), st.just("lower"),
    st.just("empty"), st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=20),
)


@st.composite
def fuzz_requests(draw: st.DrawFn, model_name: str, api_key: str) -> FuzzRequest:
    kind = draw(st.sampled_from(["chat"] * 11 + ["json"] * 2 + ["raw"] * 2 + ["route"] * 3 + ["auth"] * 2))
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    authorized = True
    if kind == "chat":
        return FuzzRequest("POST", ROUTES[0], headers, _json_bytes(draw(chat_bodies(model_name))))
    if kind == "json":
        return FuzzRequest("POST", ROUTES[0], headers, _json_bytes(draw(json_values)))
    if kind == "raw":
        headers["Content-Type"] = draw(st.sampled_from(["application/json", "text/plain", "multipart/form-data", ""]))
        return FuzzRequest("POST", ROUTES[0], headers, draw(raw_bodies))
    if kind == "route":
        method = draw(st.sampled_from(METHODS))
        path = draw(
            st.one_of(
                st.sampled_from(ROUTES),
                st.sampled_from(["/", "/v1", "/v1/completions", "/docs", "/openapi.json", "/health/", "/HEALTH",
                                 "//health", "/v1/chat/completions/", "/autotune/config/../config", "/%2e%2e/etc"]),
                st.text(alphabet=PATH_CHARACTERS, max_size=40).map(lambda text: "/" + text),
            )
        )
        body = draw(st.one_of(st.none(), chat_bodies(model_name).map(_json_bytes))) if method in ("POST", "PUT", "PATCH") else None
        return FuzzRequest(method, path, headers, body)
    # auth: the right body or a route, with a wrong, missing or odd key
    variant = draw(authorization)
    authorized = False
    if variant == "none":
        del headers["Authorization"]
    elif variant == "wrong":
        headers["Authorization"] = "Bearer " + draw(st.text(alphabet="abcdef0123456789", min_size=1, max_size=40))
    elif variant == "basic":
        headers["Authorization"] = "Basic " + base64.b64encode(f"user:{api_key}".encode()).decode()
    elif variant == "prefix":
        headers["Authorization"] = f"Bearer {api_key[:-1]}"
    elif variant == "longer":
        headers["Authorization"] = f"Bearer {api_key}0"
    elif variant == "lower":
        headers["Authorization"] = f"bearer {api_key}"
        authorized = True  # the scheme is case-insensitive (RFC 7235)
    elif variant == "empty":
        headers["Authorization"] = ""
    else:
        headers["Authorization"] = variant
    path = draw(st.sampled_from(ROUTES))
    method = "POST" if path == ROUTES[0] else "GET"
    body = _json_bytes(draw(chat_bodies(model_name))) if method == "POST" else None
    return FuzzRequest(method, path, headers, body, authorized=authorized)
