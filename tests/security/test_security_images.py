"""Image inputs as an attack surface: SSRF through image URLs and decompression bombs.

- Properties: every address of a private, loopback, link-local/metadata, CGNAT, multicast or reserved
  network, written any way a URL parser or resolver accepts (decimal, hex, octal, short forms, IPv4
  inside IPv6: mapped, 6to4, NAT64), is refused before any connection; public addresses are not.
- Through a real `autotune serve`: loopback spelled 14 ways is refused with a 400 and a tripwire
  listener on that port sees no connection.
- Decompression bombs are refused before decoding: valid 64-megapixel PNG, GIF, JPEG, TIFF and WebP
  files of a few KB (below Pillow's own guard, so only max_image_pixels stops them), headers of six
  formats claiming up to 10 billion pixels, a PNG text-chunk bomb: a 400 each in well under a second,
  and the server's memory does not move.
(Redirect re-checks, size and time limits of fetches: tests/serving/test_serving_images.py.)
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import struct
import time
import zlib
from collections.abc import Callable, Iterator

import httpx
import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin
from reliability.reliability_fuzz import data_url
from reliability.reliability_record import Outcome, current_test, record_outcome

from autotune.config import EngineConfig, ServingSettings, TunedConfig
from helpers.servers import MODEL_DIR, running_server_process
from autotune.tune.server_process import ServerProcess
from serving.security import ImageUrlPolicy, UrlRejected, forbidden_reason, resolve_checked

MODEL_NAME = MODEL_DIR.rsplit("/", 1)[1]
POLICY = ImageUrlPolicy()
MAX_IMAGE_PIXELS = 4_000_000  # the server's limit; Pillow's own bomb guard starts at 89 megapixels
FORBIDDEN_V4 = [
    "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10",
    "0.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4", "192.0.0.0/29", "198.18.0.0/15",
]
FORBIDDEN_V6 = ["::1/128", "fe80::/10", "fc00::/7", "ff00::/8", "fec0::/10", "::/128", "2001:db8::/32"]


def _spellings(address: ipaddress.IPv4Address) -> list[str]:
    """Ways to write an IPv4 host in a URL that resolvers (inet_aton) or the IPv6 parser accept."""
    value = int(address)
    a, b, c, d = address.packed
    return [
        str(address), str(value), hex(value), "0" + oct(value)[2:], f"{a}.{(b << 16) | (c << 8) | d}",
        f"{a}.{b}.{(c << 8) | d}", f"0{a:o}.0{b:o}.0{c:o}.0{d:o}", f"[::ffff:{address}]",
        f"[::ffff:{(a << 8) | b:x}:{(c << 8) | d:x}]", f"[2002:{(a << 8) | b:x}:{(c << 8) | d:x}::1]",
        f"[64:ff9b::{address}]",
    ]


def _refused(url: str) -> bool:
    try:
        asyncio.run(resolve_checked(url, POLICY))
    except UrlRejected:
        return True
    return False


def test_image_url_policy_properties() -> None:
    """Forbidden addresses are refused however they are written; IPv4 is allowed exactly when global."""
    examples = {"forbidden_v4": 0, "forbidden_v6": 0, "any_v4": 0}
    problems: list[str] = []
    common = {"deadline": None, "derandomize": True, "database": None}

    @settings(max_examples=300, **common)  # type: ignore[arg-type]
    @given(
        network=st.sampled_from(FORBIDDEN_V4),
        offset=st.integers(min_value=0, max_value=2**32),
        spelling=st.integers(min_value=0, max_value=10),
    )
    def forbidden_v4(network: str, offset: int, spelling: int) -> None:
        net = ipaddress.ip_network(network)
        address = net[offset % net.num_addresses]
        host = _spellings(address)[spelling]
        examples["forbidden_v4"] += 1
        if forbidden_reason(address) is None or not _refused(f"http://{host}:8080/cat.png"):
            problems.append(f"{address} written {host} was not refused")

    @settings(max_examples=150, **common)  # type: ignore[arg-type]
    @given(network=st.sampled_from(FORBIDDEN_V6), offset=st.integers(min_value=0, max_value=2**128))
    def forbidden_v6(network: str, offset: int) -> None:
        net = ipaddress.ip_network(network)
        address = net[offset % net.num_addresses]
        examples["forbidden_v6"] += 1
        if forbidden_reason(address) is None or not _refused(f"http://[{address}]/cat.png"):
            problems.append(f"{address} was not refused")

    @settings(max_examples=300, **common)  # type: ignore[arg-type]
    @given(address=st.ip_addresses(v=4))
    def any_v4(address: ipaddress.IPv4Address) -> None:
        """No over-blocking of public addresses, no gap in what is not public (Python's IANA tables)."""
        examples["any_v4"] += 1
        if (forbidden_reason(address) is None) != (address.is_global and not address.is_multicast):
            problems.append(f"{address}: forbidden_reason {forbidden_reason(address)!r}, is_global {address.is_global}")

    for prop in (forbidden_v4, forbidden_v6, any_v4):
        prop()
    record_outcome(
        Outcome(
            scenario="Image URL hosts in forbidden networks, every spelling (property test, no network)",
            category="security",
            tried=sum(examples.values()),
            unit="addresses",
            lost=len(problems),
            lost_meaning="a private/loopback/link-local/metadata/CGNAT/multicast/reserved address not refused, "
            "or a global one refused",
            expected="refused before any connection; global IPv4 allowed",
            test=current_test(),
            details={"examples": ", ".join(f"{k} {v}" for k, v in examples.items())},
        )
    )
    assert not problems, "\n".join(problems[:20])
    assert all(count >= 100 for count in examples.values()), examples


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = TunedConfig(
        engine="simulated",
        engine_config=EngineConfig(model=MODEL_DIR, max_model_len=4096),
        serving=ServingSettings(
            max_image_bytes=2_000_000, max_request_bytes=4_000_000, max_image_pixels=MAX_IMAGE_PIXELS,
            image_fetch_timeout_s=2,
        ),
    ).write(tmp_path_factory.mktemp("images") / "tuned.yaml")
    with running_server_process(["--config", str(config)]) as process:
        yield process


def _chat(url: str) -> dict[str, object]:
    return {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}],
        "max_tokens": 2,
    }


def test_loopback_spelled_many_ways_is_refused_without_connecting(
    server: ServerProcess, tripwire: tuple[int, list[object]]
) -> None:
    port, accepted = tripwire
    hosts = [*_spellings(ipaddress.IPv4Address("127.0.0.1")), "localhost", "LOCALHOST.", "[::1]"]
    statuses: dict[str, int] = {}
    with httpx.Client(base_url=server.base_url, timeout=10, trust_env=False) as client:
        for host in hosts:
            response = client.post("/v1/chat/completions", json=_chat(f"http://{host}:{port}/cat.png"))
            statuses[host] = response.status_code
            if response.status_code == 400:
                assert response.json()["error"]["param"] == "messages[0].content[0].image_url.url"
    record_outcome(
        Outcome(
            scenario="Image URLs naming loopback in 14 spellings (decimal, hex, octal, short, IPv6-embedded, localhost)",
            category="security",
            tried=len(hosts),
            unit="requests",
            lost=sum(status != 400 for status in statuses.values()) + len(accepted),
            lost_meaning="a URL not refused with 400, or any connection reaching the loopback listener",
            expected="400 naming the image URL; no connection",
            test=current_test(),
        )
    )
    assert all(status == 400 for status in statuses.values()), statuses
    assert accepted == []


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))


def _gif_header(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0) + b",\x00\x00\x00\x00" + struct.pack("<HH", width, height) + b"\x00\x02\x02D\x01\x00;"


def _bmp_header(width: int, height: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info), 0, 0, 14 + len(info)) + info


def _tiff_header(width: int, height: int) -> bytes:
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 8), (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, min(width * height, 2**32 - 1))]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *entry) for entry in entries) + b"\x00" * 4
    return b"II*\x00" + struct.pack("<I", 8) + ifd


def _jpeg_header(width: int, height: int) -> bytes:
    sof = struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof + b"\xff\xd9"


def _webp_header(width: int, height: int) -> bytes:
    vp8x = b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    chunk = b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def _decodable(fmt: str, mode: str, **options: object) -> bytes:
    """A valid, fully decodable 8000 x 8000 image (64 megapixels: about 190 MB as RGB) of a few KB."""
    buffer = io.BytesIO()
    Image.new(mode, (8000, 8000)).save(buffer, fmt, **options)
    return buffer.getvalue()


def _png_text_bomb() -> bytes:
    """A small PNG with a zTXt chunk that inflates to 64 MB."""
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "x" * (64 * 2**20), zip=True)
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


# (bomb, what the refusal must say): 64-megapixel images pass Pillow's guard, only ours stops them.
BOMBS: dict[str, tuple[Callable[[], bytes], str]] = {
    "png 8000x8000 decodable": (lambda: _decodable("PNG", "1"), "max_image_pixels"),
    "gif 8000x8000 decodable": (lambda: _decodable("GIF", "P"), "max_image_pixels"),
    "jpeg 8000x8000 decodable": (lambda: _decodable("JPEG", "L", quality=10), "max_image_pixels"),
    "tiff 8000x8000 decodable": (lambda: _decodable("TIFF", "1", compression="tiff_deflate"), "max_image_pixels"),
    "webp 8000x8000 decodable": (lambda: _decodable("WEBP", "L", lossless=True), "max_image_pixels"),
    "png 100000x100000 header": (lambda: _png_header(100_000, 100_000), ""),
    "gif 65535x65535 header": (lambda: _gif_header(65_535, 65_535), ""),
    "bmp 100000x100000 header": (lambda: _bmp_header(100_000, 100_000), ""),
    "tiff 100000x100000 header": (lambda: _tiff_header(100_000, 100_000), ""),
    "jpeg 65500x65500 header": (lambda: _jpeg_header(65_500, 65_500), ""),
    "webp 16384x16384 header": (lambda: _webp_header(16_384, 16_384), ""),
    "png zTXt 64 MB": (_png_text_bomb, ""),
    "png 1x40000000 header": (lambda: _png_header(1, 40_000_000), ""),
}


def test_decompression_bombs_are_refused_before_decoding(server: ServerProcess) -> None:
    process = psutil.Process(server.pid)
    rss_before = process.memory_info().rss / 2**20
    results: dict[str, tuple[int, float]] = {}
    with httpx.Client(base_url=server.base_url, timeout=30, trust_env=False) as client:
        for name, (make, says) in BOMBS.items():
            body = _chat(data_url(make()))
            started = time.monotonic()
            response = client.post("/v1/chat/completions", json=body)
            results[name] = (response.status_code, time.monotonic() - started)
            assert response.status_code == 400, (name, response.text)
            error = response.json()["error"]
            assert error["code"] == "invalid_image" and says in error["message"], (name, error)
        healthy = client.get("/health").status_code
    rss_growth = process.memory_info().rss / 2**20 - rss_before
    record_outcome(
        Outcome(
            scenario="Decompression bombs (13: 64-MP PNG/GIF/JPEG/TIFF/WebP, huge headers of 6 formats, zTXt, aspect)",
            category="security",
            tried=len(BOMBS),
            unit="requests",
            lost=sum(status != 400 for status, _ in results.values()),
            lost_meaning="a bomb decoded or answered other than 400",
            expected="400 invalid_image before decoding; server memory unchanged",
            test=current_test(),
            details={"slowest_s": round(max(s for _, s in results.values()), 3), "rss_growth_mib": round(rss_growth, 1)},
        )
    )
    assert healthy == 200
    assert max(seconds for _, seconds in results.values()) < 2.0, results
    assert rss_growth < 48, rss_growth  # one decoded 64-megapixel image is about 190 MB
