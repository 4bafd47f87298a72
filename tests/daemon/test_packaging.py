"""The package metadata matches the tree: a wheel built from pyproject carries every subpackage."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_bridge_subpackage_is_listed_in_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(project["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(("hal0_bridge", *init.parent.relative_to(ROOT / "bridge").parts))
        for init in (ROOT / "bridge").rglob("__init__.py")
    }
    assert on_disk <= listed, f"missing from pyproject packages: {sorted(on_disk - listed)}"
    assert "hal0_bridge.templates" in listed
