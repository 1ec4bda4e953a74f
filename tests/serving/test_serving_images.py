"""Image fetching through the URL policy (a real loopback HTTP server), decoding and token counts."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from helpers.serving_testlib import png_bytes

from helpers.servers import MODEL_DIR
from serving.images import ImageLimits, ImageRejected, fetch_image, prepare_image
from serving.security import ImageUrlPolicy, UrlRejected
from serving.tokens import ApproxTokenCounter, VisionGrid, image_tokens, smart_resize

CAT = png_bytes(64, 48)
LIMITS = ImageLimits(max_image_bytes=100_000, max_image_pixels=1_000_000, fetch_timeout_s=2.0)


class _Handler(BaseHTTPRequestHandler):
    hosts: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        self.hosts.append(self.headers.get("Host", ""))
        port = self.server.server_address[1]
        if self.path == "/cat.png":
            self._send(200, CAT)
        elif self.path == "/to-ip":
            self._redirect(f"http://127.0.0.1:{port}/cat.png")
        elif self.path == "/to-localhost":
            self._redirect(f"http://localhost:{port}/cat.png")
        elif self.path == "/loop":
            self._redirect("/loop")
        elif self.path == "/huge":
            self._send(200, b"x" * (LIMITS.max_image_bytes + 1))
        elif self.path == "/slow":
            time.sleep(1.5)
            self._send(200, CAT)
        else:
            self._send(404, b"nope")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def image_server() -> Iterator[tuple[int, list[str]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], _Handler.hosts
    server.shutdown()
    server.server_close()


def fetch(url: str, policy: ImageUrlPolicy, limits: ImageLimits = LIMITS) -> bytes:
    async def run() -> bytes:
        async with httpx.AsyncClient(trust_env=False) as client:
            return await fetch_image(url, policy, client, limits)

    return asyncio.run(run())


OPEN = ImageUrlPolicy(allow_private=True)


def test_fetches_from_an_allowed_host_with_the_right_host_header(image_server: tuple[int, list[str]]) -> None:
    port, hosts = image_server
    assert fetch(f"http://localhost:{port}/cat.png", OPEN) == CAT
    assert hosts[-1] == f"localhost:{port}"


def test_private_addresses_are_refused_by_default(image_server: tuple[int, list[str]]) -> None:
    port, hosts = image_server
    before = len(hosts)
    with pytest.raises(UrlRejected, match="loopback"):
        fetch(f"http://localhost:{port}/cat.png", ImageUrlPolicy())
    assert len(hosts) == before  # no request was sent


def test_redirects_are_checked_again(image_server: tuple[int, list[str]]) -> None:
    port, hosts = image_server
    allow_localhost = ImageUrlPolicy(allow_private=True, allowed_hosts=("localhost",))
    assert fetch(f"http://127.0.0.1:{port}/to-localhost", OPEN) == CAT
    before = len(hosts)
    with pytest.raises(UrlRejected, match="allowed_image_hosts"):
        fetch(f"http://localhost:{port}/to-ip", allow_localhost)
    assert len(hosts) == before + 1  # the redirect was followed nowhere


@pytest.mark.parametrize(
    ("path", "message"), [("/loop", "redirected more"), ("/huge", "max_image_bytes"), ("/missing", "HTTP 404")]
)
def test_bad_responses_are_image_errors(image_server: tuple[int, list[str]], path: str, message: str) -> None:
    port, _ = image_server
    with pytest.raises(ImageRejected, match=message):
        fetch(f"http://127.0.0.1:{port}{path}", OPEN)


def test_fetch_time_is_bounded(image_server: tuple[int, list[str]]) -> None:
    port, _ = image_server
    started = time.monotonic()
    with pytest.raises(ImageRejected, match="did not answer"):
        fetch(f"http://127.0.0.1:{port}/slow", OPEN, ImageLimits(100_000, 1_000_000, fetch_timeout_s=0.3))
    assert time.monotonic() - started < 1.2


@pytest.mark.parametrize("url", ["ftp://example.com/x.png", "http://user:pw@example.com/x.png", "http:///x.png"])
def test_url_syntax_is_checked(url: str) -> None:
    with pytest.raises(UrlRejected):
        fetch(url, OPEN)


def test_qwen_image_tokens() -> None:
    grid = VisionGrid.from_model_dir(MODEL_DIR)
    assert (grid.patch_size, grid.merge_size) == (16, 2)
    assert smart_resize(448, 448, grid) == (448, 448) and image_tokens(448, 448, grid) == 196
    tiny_h, tiny_w = smart_resize(20, 30, grid)
    assert tiny_h * tiny_w >= grid.min_pixels and tiny_h % 32 == 0 and tiny_w % 32 == 0
    big_h, big_w = smart_resize(8000, 6000, grid)
    assert big_h * big_w <= grid.max_pixels and big_h % 32 == 0
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(10, 5000, grid)


def test_prepared_image_is_resized_and_hashed() -> None:
    grid = VisionGrid()
    image = prepare_image(png_bytes(450, 300), LIMITS, grid)
    assert (image.height, image.width) == smart_resize(300, 450, grid)
    assert image.tokens == image_tokens(300, 450, grid) + 2
    assert image.content_hash == prepare_image(png_bytes(450, 300), LIMITS, grid).content_hash
    assert image.content_hash != prepare_image(png_bytes(450, 300, (0, 0, 0)), LIMITS, grid).content_hash


def test_approximate_text_tokens() -> None:
    counter = ApproxTokenCounter()
    assert counter.count("") == 0 and counter.count("abcd") == 1 and counter.count("abcde") == 2
