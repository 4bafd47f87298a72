"""The ``systemd`` backend: a slot is a unit the bridge starts and stops with ``systemctl``.

With ``container_name`` set (a Quadlet ``.container`` unit, or a unit that runs ``podman run``),
status ``container`` is that container's own state from ``container inspect``, not the unit's.
"""

from __future__ import annotations

import asyncio
import time

from ...config import SlotConfig
from .base import BackendState, Phase, SlotError, poll_until, run_cli
from .container import ContainerCli, container_state

_SYSTEMD_PHASES: dict[str, Phase] = {
    "active": "running",
    "reloading": "running",
    "activating": "starting",
    "deactivating": "stopping",
    "inactive": "stopped",
    "failed": "failed",
}


class SystemdBackend:
    """``systemctl [--user] start|stop UNIT``; state from ``show -p ActiveState -p SubState``."""

    def __init__(self, cfg: SlotConfig) -> None:
        self.unit = cfg.unit
        self._prefix = ["--user"] if cfg.systemd_user else []
        self._cfg = cfg
        self._containers = ContainerCli(cfg.runtime) if cfg.container_name else None

    async def _systemctl(self, *args: str, timeout: float) -> tuple[int, str, str]:
        result = await run_cli(["systemctl", *self._prefix, *args], timeout)
        return result.rc, result.out, result.err

    async def start(self) -> None:
        rc, _, err = await self._systemctl("start", self.unit, timeout=self._cfg.ready_timeout)
        if rc != 0:
            raise SlotError(f"systemctl start {self.unit} failed: {err or f'exit {rc}'}")

    async def stop(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        rc, _, err = await self._systemctl("stop", self.unit, timeout=timeout)
        if rc != 0:
            raise SlotError(f"systemctl stop {self.unit} failed: {err or f'exit {rc}'}")

        async def stopped() -> bool:
            return (await self.state()).phase in ("stopped", "failed")

        if not await poll_until(stopped, max(0.0, deadline - time.monotonic())):
            raise SlotError(f"{self.unit} did not stop within {timeout:g}s")

    async def state(self) -> BackendState:
        if self._containers is None:
            return await self._unit_state()
        unit, (container, note) = await asyncio.gather(
            self._unit_state(),
            container_state(self._containers, self._cfg.container_name, self._cfg.probe_timeout),
        )
        return BackendState(unit.phase, f"{unit.detail}; {note}", unit.ever_ran, container)

    async def _unit_state(self) -> BackendState:
        try:
            rc, out, err = await self._systemctl(
                "show", "-p", "ActiveState", "-p", "SubState", self.unit, timeout=self._cfg.probe_timeout
            )
        except SlotError as e:
            return BackendState("failed", str(e))
        props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        active, sub = props.get("ActiveState", ""), props.get("SubState", "")
        if rc != 0 or active not in _SYSTEMD_PHASES:
            return BackendState("failed", f"systemctl show {self.unit}: {err or active or f'exit {rc}'}")
        return BackendState(_SYSTEMD_PHASES[active], f"{active}/{sub}")

    async def close(self) -> None:
        """Units outlive the bridge: nothing to do."""
