"""Which browser pages may talk to the bridge: the ``Origin`` and ``Host`` rules (docs/security.md).

A browser lets any web page send requests to ``127.0.0.1:8080``; only the ``Origin`` header says
which page sent it. ComfyUI's own guard (``origin_only_middleware`` in ComfyUI's ``server.py``)
compares Origin and Host netlocs, only when Host is a loopback address, and answers 403. This does
at least as much, for every host:

- no ``Origin``: not a browser page (curl, Home Assistant, OpenAI clients), a same-origin navigation
  or an ``<img>`` embed: allowed — except an unsafe method marked ``Sec-Fetch-Site: cross-site``;
- ``Origin`` equal to the bridge as the client reached it (the ``Host`` header, default ports
  understood), to ``server.public_url``, or a loopback alias of a loopback Host on the same port
  (``localhost:8080`` vs ``127.0.0.1:8080``): the bridge's own page;
- ``Origin`` in ``server.allowed_origins``: allowed, and answered with CORS headers;
- anything else, ``null`` included (sandboxed frames, ``file://``): 403 ``request.forbidden_origin``.

Without a token, DNS rebinding (a foreign name re-pointed at 127.0.0.1, which makes Origin and Host
agree) is refused too: the Host must be an IP address, ``localhost``, ``server.host``, or the host of
``public_url`` or of an allowed origin.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..config import DEFAULT_PORTS, ServerConfig, normalize_origin

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Verdict(enum.Enum):
    NO_ORIGIN = "no_origin"  # not from a browser page
    SAME = "same"  # the bridge's own page
    ALLOWED = "allowed"  # server.allowed_origins: needs CORS headers
    FORBIDDEN = "forbidden"


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str  # lower case, IPv6 without brackets
    port: int | None

    @classmethod
    def parse(cls, netloc: str) -> HostPort | None:
        try:
            parts = urlsplit(f"//{netloc}")
            port = parts.port
        except ValueError:
            return None
        if not parts.hostname or parts.username is not None or parts.path:
            return None
        return cls(parts.hostname.rstrip("."), port)


def is_loopback_name(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=512)
def _host_trusted(host_header: str, trusted_hosts: frozenset[str]) -> bool:
    """The rebinding guard's verdict on one Host header. Cached: every request asks, clients send the
    same few names, and parsing one costs more than the rest of the guard (LLM proxy benchmark)."""
    hp = HostPort.parse(host_header)
    if hp is None:
        return False
    return _is_ip(hp.host) or is_loopback_name(hp.host) or hp.host in trusted_hosts


def _origin_parts(origin: str) -> tuple[str, HostPort] | None:
    """(scheme, host:port with the scheme's default port filled in) of a normalised origin."""
    scheme, _, netloc = origin.partition("://")
    hp = HostPort.parse(netloc)
    if hp is None:
        return None
    return scheme, HostPort(hp.host, hp.port or DEFAULT_PORTS[scheme])


@dataclass(frozen=True, slots=True)
class OriginRule:
    public_origin: str | None
    allowed: frozenset[str]
    trusted_hosts: frozenset[str]  # Host names accepted without a token (DNS rebinding guard)
    guard_rebinding: bool

    @classmethod
    def from_config(cls, server: ServerConfig) -> OriginRule:
        public = normalize_origin(server.public_url) if server.public_url else None
        hosts = {server.host.lower().strip("[]")}
        for origin in (*server.allowed_origins, *([public] if public else [])):
            parts = _origin_parts(origin)
            if parts is not None:
                hosts.add(parts[1].host)
        return cls(public, frozenset(server.allowed_origins), frozenset(hosts), guard_rebinding=not server.token)

    def host_ok(self, host_header: str | None) -> bool:
        """Whether a request may name this Host (always, once a token guards the API)."""
        if not self.guard_rebinding or not host_header:
            return True  # HTTP/1.0 without Host cannot come from a rebinding browser page
        return _host_trusted(host_header, self.trusted_hosts)

    def judge(self, origin_header: str | None, host_header: str | None, method: str, fetch_site: str | None) -> Verdict:
        if origin_header is None:
            if fetch_site == "cross-site" and method in UNSAFE_METHODS:
                return Verdict.FORBIDDEN
            return Verdict.NO_ORIGIN
        try:
            origin = normalize_origin(origin_header)
        except ValueError:
            return Verdict.FORBIDDEN  # "null", garbage
        if origin == self.public_origin or self._same_as_host(origin, host_header):
            return Verdict.SAME
        if origin in self.allowed:
            return Verdict.ALLOWED
        return Verdict.FORBIDDEN

    @staticmethod
    def _same_as_host(origin: str, host_header: str | None) -> bool:
        parts = _origin_parts(origin)
        host = HostPort.parse(host_header) if host_header else None
        if parts is None or host is None:
            return False
        scheme, from_page = parts
        reached = HostPort(host.host, host.port or DEFAULT_PORTS[scheme])
        if from_page == reached:
            return True
        # localhost:8080 and 127.0.0.1:8080 are one listener to the user: a loopback alias is ours
        return from_page.port == reached.port and is_loopback_name(from_page.host) and is_loopback_name(reached.host)
