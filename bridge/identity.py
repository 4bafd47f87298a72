"""Who this bridge is: a ``node_id`` that never changes, the hostname as its display name, and the
address others reach it at.

``node_id`` is the Home Assistant entry's unique id, the MQTT client id and the discovery identifier,
so a host rename must not change it. It is generated once (a UUID) into ``state_dir/node_id``. An
install that ran before this file existed -- its ``state_dir`` already holds state -- keeps the
hostname-derived id it always had: that id is written to the file, so from then on a rename no longer
changes it. ``[mqtt] node_id`` in the config wins over both.

Everything here touches the disk or the network stack: call :func:`resolve` in a worker thread.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .config import ConfigError, ServerConfig

_LOGGER = logging.getLogger(__name__)

NODE_ID_FILE = "node_id"
NODE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
# A documentation address (RFC 5737): connecting a UDP socket to it sends nothing, but makes the
# kernel pick the source address of the default route -- the address LAN clients reach us at.
_ROUTE_PROBE = ("192.0.2.1", 9)

Source = Literal["config", "state", "legacy", "new"]


@dataclass(frozen=True, slots=True)
class Identity:
    node_id: str
    hostname: str
    source: Source  # where node_id came from: config key, state file, migrated hostname id, or new
    host: str  # the address to advertise for the API (never a wildcard)


def hostname() -> str:
    return socket.gethostname() or "hal0"


def legacy_node_id(name: str | None = None) -> str:
    """The id every bridge used before ``state_dir/node_id``: the hostname, lower case, [a-z0-9_-]."""
    node = re.sub(r"[^a-z0-9_-]+", "_", (name or hostname()).lower()).strip("_")
    return node or "hal0"


def advertised_host(server: ServerConfig) -> str:
    """``server.host``, or for a wildcard bind the primary address of this machine (else its name)."""
    if server.host not in WILDCARD_HOSTS:
        return server.host
    family = socket.AF_INET6 if server.host == "::" else socket.AF_INET
    probe = ("2001:db8::1", 9) if family == socket.AF_INET6 else _ROUTE_PROBE
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect(probe)
            address = str(sock.getsockname()[0])
    except OSError:
        return hostname()
    return address if not ipaddress.ip_address(address).is_unspecified else hostname()


def _has_earlier_state(state_dir: Path) -> bool:
    try:
        return any(p.name != NODE_ID_FILE and not p.name.startswith(".") for p in state_dir.iterdir())
    except OSError:  # missing (a first start) or unreadable: nothing to keep
        return False


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def resolve(configured_node_id: str, server: ServerConfig) -> Identity:
    """The bridge's identity; creates ``state_dir/node_id`` on the first start.

    A ``node_id`` file that cannot be read or holds no valid id stops start-up: silently making a new
    id would make Home Assistant see a different bridge.
    """
    name = hostname()
    host = advertised_host(server)
    if configured_node_id:
        return Identity(configured_node_id, name, "config", host)
    path = server.state_dir / NODE_ID_FILE
    try:
        stored = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        stored = None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the node id ({err}); fix the file or set [mqtt] node_id") from None
    if stored is not None:
        if not NODE_ID_RE.match(stored):
            raise ConfigError(
                f"{path}: not a node id ({stored[:40]!r}); restore it or set [mqtt] node_id "
                "(a new id makes Home Assistant see a new bridge)"
            )
        return Identity(stored, name, "state", host)
    source: Source
    if _has_earlier_state(server.state_dir):
        node_id, source = legacy_node_id(name), "legacy"
        _LOGGER.info("keeping this install's node id %r (written to %s)", node_id, path)
    else:
        node_id, source = str(uuid.uuid4()), "new"
        _LOGGER.info("new node id %s (written to %s)", node_id, path)
    try:
        _write_atomically(path, node_id + "\n")
    except OSError as err:
        raise ConfigError(f"{path}: cannot store the node id ({err}); set server.state_dir or [mqtt] node_id") from None
    return Identity(node_id, name, source, host)
