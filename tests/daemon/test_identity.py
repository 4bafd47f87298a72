"""The bridge's identity: a node id generated once into state_dir, kept across host renames; an
install from before keeps its hostname-derived id; the config key wins; the hostname is only a name."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hal0_bridge import API_VERSION
from hal0_bridge.app import create_app
from hal0_bridge.config import Config, ConfigError, build
from hal0_bridge.identity import NODE_ID_FILE, advertised_host, legacy_node_id, resolve


def _server(state_dir: Path, host: str = "127.0.0.1") -> Any:
    return build({"server": {"state_dir": str(state_dir), "host": host, "token": "t" * 20}}).server


def _rename_host(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: name)


def test_first_start_generates_a_uuid_and_stores_it(tmp_path: Path) -> None:
    state = tmp_path / "state"

    identity = resolve("", _server(state))

    assert identity.source == "new"
    assert str(uuid.UUID(identity.node_id)) == identity.node_id
    assert (state / NODE_ID_FILE).read_text().strip() == identity.node_id


def test_the_stored_id_survives_a_host_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _rename_host(monkeypatch, "box-one")
    first = resolve("", _server(tmp_path))
    _rename_host(monkeypatch, "renamed-box")

    second = resolve("", _server(tmp_path))

    assert (second.node_id, second.source) == (first.node_id, "state")
    assert (first.hostname, second.hostname) == ("box-one", "renamed-box")


def test_an_existing_install_keeps_its_hostname_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # what a bridge from before the node_id file left in state_dir: arbiter state and the image cache
    (tmp_path / "arbiter.json").write_text(json.dumps({"mode": "inference", "version": 1}))
    (tmp_path / "cache").mkdir()
    _rename_host(monkeypatch, "GPU.Box")

    migrated = resolve("", _server(tmp_path))
    _rename_host(monkeypatch, "new-name")
    later = resolve("", _server(tmp_path))

    assert (migrated.node_id, migrated.source) == ("gpu_box", "legacy")
    assert migrated.node_id == legacy_node_id("GPU.Box")
    assert (later.node_id, later.source) == ("gpu_box", "state")


def test_the_config_key_wins_and_writes_nothing(tmp_path: Path) -> None:
    identity = resolve("my-node", _server(tmp_path))

    assert (identity.node_id, identity.source) == ("my-node", "config")
    assert not (tmp_path / NODE_ID_FILE).exists()


@pytest.mark.parametrize("content", [b"", b"has spaces in it\n", b"\xff\xfe", b"x" * 65])
def test_a_damaged_id_file_stops_start_up_instead_of_making_a_new_bridge(tmp_path: Path, content: bytes) -> None:
    (tmp_path / NODE_ID_FILE).write_bytes(content)

    with pytest.raises(ConfigError, match="node_id"):
        resolve("", _server(tmp_path))


def test_a_wildcard_bind_advertises_a_real_address(tmp_path: Path) -> None:
    host = advertised_host(_server(tmp_path, host="0.0.0.0"))

    assert host not in ("", "0.0.0.0")
    assert advertised_host(_server(tmp_path, host="192.0.2.7")) == "192.0.2.7"


async def test_info_names_the_node_the_host_and_the_api_version(
    aiohttp_client: Any, bridge_config: Callable[..., Config], tmp_path: Path
) -> None:
    api = await aiohttp_client(create_app(bridge_config()))

    info = await (await api.get("/api/info")).json()

    stored = (tmp_path / "state" / NODE_ID_FILE).read_text().strip()
    assert info["node_id"] == stored
    assert info["hostname"] == socket.gethostname()
    assert info["api_version"] == API_VERSION
    assert info["mqtt"] == {"enabled": False, "base_topic": "hal0", "commands": "all", "discovery": False}
