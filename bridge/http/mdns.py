"""Announces the API over mDNS / DNS-SD as ``_hal0-bridge._tcp.local.``, so Home Assistant (and
anything else that browses) finds the bridge without anyone typing a URL.

``server.zeroconf``: None (default) announces on non-loopback binds only -- nobody else could reach a
loopback bind -- and true/false force it. A specific bind address is announced on that interface
only; a wildcard bind on every interface, with the machine's primary address in the record. TXT records: ``node_id`` (the discovery identifier),
``version``, ``api_version``, ``auth`` (``1`` when the token is needed) and ``path`` (``/``).

The ``zeroconf`` library is imported only when announcing. A network where multicast does not work
costs a warning, never the bridge: the API serves on regardless.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import TYPE_CHECKING, Any

from .. import API_VERSION, __version__
from ..config import ServerConfig
from ..identity import Identity

if TYPE_CHECKING:
    from zeroconf import ServiceInfo
    from zeroconf.asyncio import AsyncZeroconf

_LOGGER = logging.getLogger(__name__)

SERVICE_TYPE = "_hal0-bridge._tcp.local."
# the goodbye packets take ~0.25 s each (RFC 6762 sends them more than once); bounded so stop never hangs
GOODBYE_TIMEOUT = 3.0


def announce_enabled(server: ServerConfig) -> bool:
    return server.zeroconf if server.zeroconf is not None else not server.is_loopback


def txt_records(identity: Identity, server: ServerConfig) -> dict[str, str]:
    return {
        "node_id": identity.node_id,
        "version": __version__,
        "api_version": str(API_VERSION),
        "auth": "1" if server.token else "0",
        "path": "/",
    }


def instance_name(identity: Identity) -> str:
    """``hal0 <hostname>``: what a browser lists; the library renames it on a clash."""
    label = f"hal0 {identity.hostname}".replace(".", "-")
    return label.encode()[:63].decode("utf-8", "ignore")


class MdnsAnnouncer:
    """Registers the service on start and withdraws it (goodbye packets) on stop."""

    def __init__(self, server: ServerConfig, identity: Identity) -> None:
        self._server = server
        self._identity = identity
        self._zc: AsyncZeroconf | None = None
        self._info: ServiceInfo | None = None

    @property
    def announced(self) -> ServiceInfo | None:
        """The registered record (its name may differ from :func:`instance_name` after a clash)."""
        return self._info

    def _interfaces_and_addresses(self) -> tuple[Any, list[str]]:
        """Where to announce, and the address in the record: the bind address, or for a wildcard
        bind (or a host name) the machine's primary address, which the MQTT ``api_url`` names too."""
        from zeroconf import InterfaceChoice

        try:
            address = ipaddress.ip_address(self._identity.host)
        except ValueError:  # no address could be found (identity fell back to the host name)
            return InterfaceChoice.All, []
        bound_here = self._server.host == str(address) and address.version == 4
        return ([str(address)] if bound_here else InterfaceChoice.All), [str(address)]

    async def start(self) -> None:
        from zeroconf import IPVersion, ServiceInfo
        from zeroconf.asyncio import AsyncZeroconf

        interfaces, addresses = self._interfaces_and_addresses()
        if not addresses:
            _LOGGER.warning("zeroconf: no network address to announce; add the bridge by address instead")
            return
        v6 = any(":" in a for a in addresses)
        v4 = any(":" not in a for a in addresses)
        version = IPVersion.All if v4 and v6 else IPVersion.V6Only if v6 else IPVersion.V4Only
        name = instance_name(self._identity)
        info = ServiceInfo(
            SERVICE_TYPE,
            f"{name}.{SERVICE_TYPE}",
            port=self._server.port,
            properties=txt_records(self._identity, self._server),
            server=f"{_dns_label(self._identity.hostname)}.local.",
            parsed_addresses=addresses,
        )
        try:
            self._zc = AsyncZeroconf(interfaces=interfaces, ip_version=version)
            # returns once the name is checked; the announcements go out in the background
            await self._zc.async_register_service(info, allow_name_change=True)
        except (OSError, ValueError, RuntimeError) as err:  # no multicast route, address gone, ...
            _LOGGER.warning("zeroconf: cannot announce the API (%s); add the bridge by address instead", err)
            await self._close()
            return
        self._info = info
        _LOGGER.info("zeroconf: announced %s on %s:%s", info.name, ", ".join(addresses), self._server.port)

    async def stop(self) -> None:
        if self._zc is not None and self._info is not None:
            try:
                goodbye = await self._zc.async_unregister_service(self._info)
                await asyncio.wait_for(goodbye, GOODBYE_TIMEOUT)  # sent before the socket closes
            except (OSError, RuntimeError, TimeoutError) as err:
                _LOGGER.debug("zeroconf: withdrawing the service failed: %s", err)
        self._info = None
        await self._close()

    async def _close(self) -> None:
        zc, self._zc = self._zc, None
        if zc is not None:
            await zc.async_close()


def _dns_label(name: str) -> str:
    label = "".join(c if c.isalnum() or c == "-" else "-" for c in name.split(".")[0]).strip("-")
    return label[:63] or "hal0-bridge"
