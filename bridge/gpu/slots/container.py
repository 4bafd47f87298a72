"""The ``container`` backend: the slot is a podman or docker container the bridge starts and stops.

Lifecycle through the runtime's CLI (the same verbs for both runtimes): state = ``container
inspect NAME`` (JSON; ``State.Status``, ``State.ExitCode``, ``State.Error``, ``Config.Labels``),
start = ``start NAME`` (``create`` first when the container is absent and ``create = true``),
stop = ``stop -t SECONDS NAME`` (the runtime sends SIGTERM, then SIGKILL after that many seconds).
A container outlives the bridge, like a unit: resident ComfyUI keeps running across a restart.

What the bridge relies on from the runtimes (podman 4/5, docker 24+; recorded in
tests/support/fake_container.py, which answers the same way):

* a failed command exits non-zero and says why on stderr; the text is passed on verbatim;
* a container that does not exist is reported on stderr with "no such container" (podman
  ``Error: no such container NAME``, docker ``... No such container: NAME``), case aside;
  any other failure (e.g. docker's "Cannot connect to the Docker daemon") is an error, not absence;
* ``State.Status`` is one of podman's ``created, configured, initialized, running, paused,
  stopping, stopped, exited, removing`` or docker's ``created, running, paused, restarting,
  removing, exited, dead`` (:data:`STATUS` maps each once).

``create`` passes ``--pull=never``: pulling a multi-GB image inside a GPU switch would outlast any
sensible ``ready_timeout``, so a missing image fails at once with the runtime's message and a hint
to pull it first. Containers the bridge creates carry two labels, the slot name and a hash of
(image, args, command); one whose hash no longer matches the config is removed and created anew
when it is next started (never while running). A container created by hand (no label) is used as is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any

from ...config import SlotConfig
from ...status import Container
from .base import BackendState, CliResult, Phase, SlotError, run_cli

_LOG = logging.getLogger(__name__)

LABEL_SLOT = "io.hal0.slot"
LABEL_SPEC = "io.hal0.spec"
LOG_TAIL_LINES = 5  # container output quoted in the error of a container that died

# State.Status -> (slot phase, status ``container``); an exited container's phase is refined by
# its exit code in ContainerBackend.state().
STATUS: dict[str, tuple[Phase, Container]] = {
    "running": ("running", "running"),
    "paused": ("running", "running"),  # holds its memory; ComfyUI does not answer, so never ready
    "restarting": ("starting", "running"),
    "stopping": ("stopping", "running"),
    "created": ("stopped", "exited"),
    "configured": ("stopped", "exited"),
    "initialized": ("stopped", "exited"),
    "stopped": ("stopped", "exited"),
    "exited": ("stopped", "exited"),
    "removing": ("stopping", "exited"),
    "dead": ("failed", "exited"),
}


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    """The parts of ``container inspect`` the bridge reads."""

    status: str
    exit_code: int = 0
    error: str = ""
    oom_killed: bool = False
    finished_at: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, obj: Any) -> ContainerInfo:
        """One element of the inspect array; missing or odd fields read as empty."""
        state = obj.get("State") if isinstance(obj, dict) else None
        if not isinstance(state, dict):
            raise ValueError("no State object")
        config = obj.get("Config")
        labels = config.get("Labels") if isinstance(config, dict) else None
        if not isinstance(labels, dict):
            labels = {}
        code = state.get("ExitCode")
        return cls(
            status=str(state.get("Status") or "").lower(),
            exit_code=code if isinstance(code, int) and not isinstance(code, bool) else 0,
            error=str(state.get("Error") or ""),
            oom_killed=state.get("OOMKilled") is True,
            finished_at=str(state.get("FinishedAt") or ""),
            labels={str(k): str(v) for k, v in labels.items()},
        )

    @property
    def running(self) -> bool:
        return STATUS.get(self.status, ("failed", "exited"))[1] == "running"


class ContainerCli:
    """One runtime's CLI (``podman`` or ``docker`` on PATH), every call bounded by a timeout."""

    def __init__(self, runtime: str) -> None:
        self.runtime = runtime

    async def run(self, *args: str, timeout: float) -> CliResult:
        return await run_cli([self.runtime, *args], timeout, shown=3)

    async def inspect(self, name: str, timeout: float) -> tuple[ContainerInfo | None, str]:
        """The container's state, or (None, the runtime's message) when there is no such container.

        Raises :class:`SlotError` when the runtime cannot answer (missing binary, no daemon, timeout).
        """
        res = await self.run("container", "inspect", name, timeout=timeout)
        if res.rc != 0:
            if "no such container" in res.err.lower() or "no such object" in res.err.lower():
                return None, res.err
            raise SlotError(f"{self.runtime} container inspect {name} failed: {res.message()}")
        try:
            data = json.loads(res.out)
            return ContainerInfo.parse(data[0]), ""
        except (ValueError, IndexError, KeyError, TypeError, AttributeError) as err:
            raise SlotError(f"{self.runtime} container inspect {name}: unreadable output ({err})") from None

    async def logs_tail(self, name: str, lines: int, timeout: float) -> str:
        """The last lines the container printed (stdout and stderr), or "" when they cannot be read."""
        try:
            res = await self.run("logs", "--tail", str(lines), name, timeout=timeout)
        except SlotError:
            return ""
        text = "\n".join(part for part in (res.out.strip(), res.err.strip()) if part) if res.rc == 0 else ""
        return " | ".join(line.strip() for line in text.splitlines() if line.strip())


def spec_hash(cfg: SlotConfig) -> str:
    """What the bridge created the container from; a change means: create it anew."""
    spec = json.dumps([cfg.image, list(cfg.args), list(cfg.command)])
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


class ContainerBackend:
    """``podman``/``docker`` ``start``/``stop``/``container inspect`` on the slot's container."""

    def __init__(self, cfg: SlotConfig) -> None:
        self.name = cfg.container_name
        self._cfg = cfg
        self._cli = ContainerCli(cfg.runtime)
        self._started = False  # we started it: an exit we did not ask for is a failure
        self._stopping = False
        self._exit_detail: tuple[str, str] | None = None  # (FinishedAt, detail) of the last exit seen

    @property
    def runtime(self) -> str:
        return self._cli.runtime

    def _create_argv(self) -> list[str]:
        cfg = self._cfg
        return [
            "create", "--name", self.name, "--pull=never",
            "--label", f"{LABEL_SLOT}={cfg.name}", "--label", f"{LABEL_SPEC}={spec_hash(cfg)}",
            *cfg.args, cfg.image, *cfg.command,
        ]  # fmt: skip

    async def _create(self) -> None:
        res = await self._cli.run(*self._create_argv(), timeout=self._cfg.ready_timeout)
        if res.rc != 0:
            msg = f"{self.runtime} create {self.name} failed: {res.message()}"
            low = res.err.lower()
            if "image not known" in low or "no such image" in low:
                msg += f" (pull it first: {self.runtime} pull {self._cfg.image})"
            raise SlotError(msg)
        _LOG.info("slot %s: created container %s from %s", self._cfg.name, self.name, self._cfg.image)

    async def _remove(self) -> None:
        res = await self._cli.run("rm", self.name, timeout=self._cfg.stop_timeout)
        if res.rc != 0:
            raise SlotError(f"{self.runtime} rm {self.name} failed: {res.message()}")

    async def start(self) -> None:
        info, missing = await self._cli.inspect(self.name, timeout=self._cfg.probe_timeout)
        if info is not None and info.running:
            return
        if info is None:
            if not self._cfg.create:
                raise SlotError(f"container {self.name} does not exist and create = false: {missing}")
            await self._create()
        elif self._cfg.create and info.labels.get(LABEL_SPEC, spec_hash(self._cfg)) != spec_hash(self._cfg):
            _LOG.info("slot %s: image/args changed; creating container %s anew", self._cfg.name, self.name)
            await self._remove()
            await self._create()
        self._stopping = False
        res = await self._cli.run("start", self.name, timeout=self._cfg.ready_timeout)
        if res.rc != 0:
            raise SlotError(f"{self.runtime} start {self.name} failed: {res.message()}")
        self._started = True
        self._exit_detail = None

    async def stop(self, timeout: float) -> None:
        """``stop -t`` (whole seconds); the runtime SIGKILLs after that, so the CLI gets twice as long."""
        info, _ = await self._cli.inspect(self.name, timeout=self._cfg.probe_timeout)
        if info is None or not info.running:  # already down: keep how it ended (a crash stays a crash)
            return
        seconds = max(1, math.ceil(timeout))
        self._stopping = True
        res = await self._cli.run("stop", "-t", str(seconds), self.name, timeout=2 * seconds + self._cfg.probe_timeout)
        if res.rc != 0 and "no such container" not in res.err.lower():
            raise SlotError(f"{self.runtime} stop {self.name} failed: {res.message()}")
        info, _ = await self._cli.inspect(self.name, timeout=self._cfg.probe_timeout)
        if info is not None and info.running:
            raise SlotError(f"container {self.name} did not stop within {timeout:g}s (State.Status {info.status})")

    async def state(self) -> BackendState:
        try:
            info, _ = await self._cli.inspect(self.name, timeout=self._cfg.probe_timeout)
        except SlotError as err:
            return BackendState("failed", str(err), container="absent")
        if info is None:
            return BackendState("stopped", f"no container {self.name}", container="absent")
        if info.status not in STATUS:
            return BackendState("failed", f"container {self.name}: unknown State.Status {info.status!r}", container="exited")
        phase, container = STATUS[info.status]
        if info.status in ("exited", "stopped") and self._started and not self._stopping:
            detail = await self._died(info)
            return BackendState("failed" if info.exit_code or info.oom_killed else "stopped", detail, container=container)
        if info.status == "paused":
            return BackendState(phase, f"container {self.name} is paused", container=container)
        return BackendState(phase, info.status, container=container)

    async def _died(self, info: ContainerInfo) -> str:
        """Why a container we started exited: code, the runtime's State.Error, OOM, its last output."""
        if self._exit_detail is not None and self._exit_detail[0] == info.finished_at:
            return self._exit_detail[1]
        detail = f"container {self.name} exited with code {info.exit_code}"
        if info.oom_killed:
            detail += " (OOM killed)"
        if info.error:
            detail += f": {info.error}"
        tail = await self._cli.logs_tail(self.name, LOG_TAIL_LINES, timeout=self._cfg.probe_timeout)
        if tail:
            detail += f"; last output: {tail}"
        self._exit_detail = (info.finished_at, detail)
        return detail

    async def close(self) -> None:
        """Containers outlive the bridge (ComfyUI stays resident): nothing to do."""


async def container_state(cli: ContainerCli, name: str, timeout: float) -> tuple[Container, str]:
    """Status ``container`` of a container run by something else (a systemd unit), with a note."""
    try:
        info, _ = await cli.inspect(name, timeout=timeout)
    except SlotError as err:
        return "absent", str(err)
    if info is None:
        return "absent", f"no container {name}"
    return STATUS.get(info.status, ("failed", "exited"))[1], f"container {info.status}"
