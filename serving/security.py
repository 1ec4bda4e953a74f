"""Image URL policy (SSRF): the one implementation used by our app and by the vLLM middleware.

A URL is allowed when its scheme is http(s), it has no credentials, its host is in
`allowed_image_hosts` (when that list is non-empty) and EVERY address it resolves to is public
(not private, loopback, link-local/metadata, multicast, reserved, CGNAT or unspecified), unless
`allow_private_image_urls`. Resolution happens before any connection; callers connect to a checked
address (our fetcher) so DNS cannot change the answer in between.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from pydantic import BaseModel, ConfigDict

from autotune.config import ServingSettings
from autotune.errors import AutotuneError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 well-known prefix: the last 32 bits are IPv4


class UrlRejected(AutotuneError):
    """An image URL the policy refuses (answered as a 400)."""


class ImageUrlPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    allow_private: bool = False
    allowed_hosts: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: ServingSettings) -> ImageUrlPolicy:
        return cls(
            allow_private=settings.allow_private_image_urls,
            allowed_hosts=tuple(host.lower().rstrip(".") for host in settings.allowed_image_hosts),
        )


@dataclass(frozen=True, slots=True)
class ResolvedUrl:
    url: SplitResult
    host: str
    port: int
    addresses: tuple[str, ...]  # all checked; connect to one of these


def forbidden_reason(address: IPAddress) -> str | None:
    """Why an address may not be fetched from, or None when it is public.

    IPv6 addresses that carry an IPv4 address (mapped ::ffff:a.b.c.d, 6to4 2002:AABB:CCDD::, NAT64
    64:ff9b::a.b.c.d) are judged by that IPv4 address too; deprecated site-local fec0::/10 is refused."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        else:
            embedded = address.sixtofour
            if embedded is None and address in _NAT64:
                embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
            if embedded is not None:
                inner = forbidden_reason(embedded)
                if inner is not None:
                    return f"{inner} (embedded in {address})"
            if address.is_site_local:
                return "site-local"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local (cloud metadata)"
    if address.is_unspecified:
        return "unspecified"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "shared (CGNAT)"
    if address.is_private:
        return "private"
    if address.is_reserved or not address.is_global:
        return "reserved"
    return None


def check_url_syntax(url: str, policy: ImageUrlPolicy) -> tuple[SplitResult, str, int]:
    """Scheme, credentials and host allow-list; returns (parts, host, port)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRejected(f"invalid image URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise UrlRejected(f"image URL scheme must be http, https or data (got {parts.scheme or 'none'!r})")
    if parts.username is not None or parts.password is not None:
        raise UrlRejected("image URLs with credentials are not allowed")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UrlRejected("image URL has no host")
    if policy.allowed_hosts and host not in policy.allowed_hosts:
        raise UrlRejected(f"image host {host!r} is not in allowed_image_hosts")
    return parts, host, port or (443 if parts.scheme == "https" else 80)


async def resolve_checked(url: str, policy: ImageUrlPolicy) -> ResolvedUrl:
    """Check the URL and resolve its host; every resolved address must be allowed."""
    parts, host, port = check_url_syntax(url, policy)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            raise UrlRejected(f"image host {host!r} does not resolve") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise UrlRejected(f"image host {host!r} does not resolve")
    if not policy.allow_private:
        for address in addresses:
            reason = forbidden_reason(ipaddress.ip_address(address.split("%", 1)[0]))
            if reason is not None:
                raise UrlRejected(
                    f"image URL host {host!r} resolves to a {reason} address ({address}); "
                    "set allow_private_image_urls to allow it"
                )
    return ResolvedUrl(url=parts, host=host, port=port, addresses=tuple(addresses))
