"""A small async client for the hal0-bridge REST + SSE API.

Entities and actions call typed methods here and never build URLs. It speaks only what the bridge
documents (DESIGN §4) and turns every failure into one of three exceptions, so callers can tell
"the bridge is away" from "the token is wrong" from "the bridge said no (with its error code)".
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
import json
from typing import Any

import aiohttp
from yarl import URL

from .const import (
    GENERATE_TIMEOUT,
    REQUEST_TIMEOUT,
    STREAM_CONNECT_TIMEOUT,
    STREAM_READ_TIMEOUT,
)


class Hal0Error(Exception):
    """Base of every client error."""


class Hal0ConnectionError(Hal0Error):
    """The bridge did not answer (refused, timed out, not a hal0 bridge, garbage)."""


class Hal0AuthError(Hal0Error):
    """The bridge rejected the bearer token (401 ``auth.unauthorized``)."""


class Hal0ApiError(Hal0Error):
    """The bridge answered with its error envelope."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        param: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.details = details or {}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True, slots=True)
class Memory:
    """GPU (GTT) and system RAM gauges in bytes; ``None`` where the bridge does not know."""

    gtt_used: int | None = None
    gtt_total: int | None = None
    ram_used: int | None = None
    ram_total: int | None = None
    gtt_source: str | None = None


@dataclass(frozen=True, slots=True)
class Progress:
    """The render running now."""

    prompt_id: str
    step: int
    steps: int
    it_s: float | None = None
    eta_s: float | None = None

    @property
    def percent(self) -> float:
        return round(100.0 * self.step / self.steps, 1) if self.steps > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Switchover:
    active: bool = False
    target: str | None = None
    error: str | None = None
    trigger: str | None = None
    started_at: float | None = None
    finished_at: float | None = None


@dataclass(frozen=True, slots=True)
class Gpu:
    """amdgpu telemetry (load %, edge temperature °C, power W); ``None`` parts the host lacks."""

    card: str
    busy_percent: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None


@dataclass(frozen=True, slots=True)
class Slot:
    name: str
    group: str
    state: str


@dataclass(frozen=True, slots=True)
class Status:
    """The bridge's status snapshot (``GET /api/comfyui/status`` and SSE ``status``)."""

    mode: str = "inference"
    engine: str = "stopped"
    reachable: bool = False
    container: str = "absent"
    memory: Memory = field(default_factory=Memory)
    queue_running: int = 0
    queue_pending: int = 0
    progress: Progress | None = None
    switchover: Switchover = field(default_factory=Switchover)
    pinned: bool = False
    idle_restore_at: float | None = None
    slots: tuple[Slot, ...] = ()
    llm_in_flight: int = 0
    llm_queued: int = 0
    updated_at: float | None = None
    idle_restore_failures: int = 0
    gpu: Gpu | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Status:
        """Parse leniently: a field the bridge leaves out or sends oddly gets its safe default."""
        mem = _obj(data.get("memory"))
        queue = _obj(data.get("queue"))
        prog = data.get("progress")
        progress = None
        if isinstance(prog, dict) and _int(prog.get("steps")) is not None:
            progress = Progress(
                prompt_id=str(prog.get("prompt_id") or ""),
                step=_int(prog.get("step")) or 0,
                steps=_int(prog.get("steps")) or 0,
                it_s=_float(prog.get("it_s")),
                eta_s=_float(prog.get("eta_s")),
            )
        sw = _obj(data.get("switchover"))
        llm = _obj(data.get("llm"))
        slots = tuple(
            Slot(name=str(s.get("name", "")), group=str(s.get("group", "")), state=str(s.get("state", "")))
            for s in data.get("slots") or []
            if isinstance(s, dict)
        )
        return cls(
            mode=str(data.get("mode", "inference")),
            engine=str(data.get("engine", "stopped")),
            reachable=data.get("reachable") is True,
            container=str(data.get("container", "absent")),
            memory=Memory(
                gtt_used=_int(mem.get("gtt_used")),
                gtt_total=_int(mem.get("gtt_total")),
                ram_used=_int(mem.get("ram_used")),
                ram_total=_int(mem.get("ram_total")),
                gtt_source=mem.get("gtt_source") if isinstance(mem.get("gtt_source"), str) else None,
            ),
            queue_running=_int(queue.get("running")) or 0,
            queue_pending=_int(queue.get("pending")) or 0,
            progress=progress,
            switchover=Switchover(
                active=sw.get("active") is True,
                target=sw.get("target") if isinstance(sw.get("target"), str) else None,
                error=sw.get("error") if isinstance(sw.get("error"), str) else None,
                trigger=sw.get("trigger") if isinstance(sw.get("trigger"), str) else None,
                started_at=_float(sw.get("started_at")),
                finished_at=_float(sw.get("finished_at")),
            ),
            pinned=data.get("pinned") is True,
            idle_restore_at=_float(data.get("idle_restore_at")),
            slots=slots,
            llm_in_flight=_int(llm.get("in_flight")) or 0,
            llm_queued=_int(llm.get("queued")) or 0,
            updated_at=_float(data.get("updated_at")),
            idle_restore_failures=_int(data.get("idle_restore_failures")) or 0,
            gpu=(
                Gpu(
                    card=str(gpu.get("card") or ""),
                    busy_percent=_float(gpu.get("busy_percent")),
                    temperature_c=_float(gpu.get("temperature_c")),
                    power_w=_float(gpu.get("power_w")),
                )
                if isinstance(gpu := data.get("gpu"), dict)
                else None
            ),
        )


@dataclass(frozen=True, slots=True)
class BridgeInfo:
    """``GET /api/info``: who the bridge is and what it offers."""

    node_id: str
    version: str
    api_url: str
    models: tuple[str, ...]
    capabilities: tuple[str, ...]
    name: str = "hal0-bridge"
    # API version 1 bridges sent none of these: they read as version 1, named by node_id, no discovery
    api_version: int = 1
    hostname: str | None = None
    auth_required: bool = True
    mqtt_enabled: bool = False
    mqtt_discovery: bool = False

    @property
    def display_name(self) -> str:
        """The hostname when the bridge says it (names only; ``node_id`` identifies)."""
        return self.hostname or self.node_id

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BridgeInfo:
        if data.get("name") != "hal0-bridge" or not isinstance(data.get("node_id"), str) or not data["node_id"]:
            raise Hal0ConnectionError("the server is not a hal0 bridge (no name/node_id in /api/info)")
        return cls(
            node_id=data["node_id"],
            version=str(data.get("version", "")),
            api_url=str(data.get("api_url") or ""),
            models=tuple(
                str(m["id"]) for m in data.get("models") or [] if isinstance(m, dict) and m.get("id")
            ),
            capabilities=tuple(str(c) for c in data.get("capabilities") or []),
            name=data["name"],
            api_version=1 if (version := _int(data.get("api_version"))) is None else version,
            hostname=data["hostname"] if isinstance(data.get("hostname"), str) and data["hostname"] else None,
            auth_required=data.get("auth_required") is not False,
            mqtt_enabled=_obj(data.get("mqtt")).get("enabled") is True,
            mqtt_discovery=_obj(data.get("mqtt")).get("discovery") is True,
        )


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    """One answer of ``POST /v1/images/generations``: absolute URLs or PNG bytes, plus what was used."""

    created: int | None
    urls: tuple[str, ...]
    images: tuple[bytes, ...]
    model: str | None
    seed: int | None
    steps: int | None
    cfg: float | None
    size: str | None
    prompt_id: str | None
    timings: dict[str, Any]
    edit: dict[str, Any] | None = None  # an edit's mode, strength and mask source (None: a generation)

    @property
    def width_height(self) -> tuple[int | None, int | None]:
        try:
            w, h = (self.size or "").split("x")
            return int(w), int(h)
        except ValueError:
            return None, None


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One Server-Sent Event: ``event`` type and its JSON ``data``."""

    event: str
    data: dict[str, Any]


class Hal0Client:
    """Talks to one bridge over HA's shared aiohttp session."""

    def __init__(self, session: aiohttp.ClientSession, host: str, port: int, token: str | None = None) -> None:
        self._session = session
        self.base_url = URL.build(scheme="http", host=host, port=port)
        self._token = token or None

    def url(self, path_or_url: str) -> str:
        """Absolute URL for a bridge path (image URLs come back relative unless public_url is set)."""
        target = URL(path_or_url)
        return str(target if target.is_absolute() else self.base_url.join(target))

    def _headers(self, auth: bool) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if auth and self._token else {}

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json_body: dict[str, Any] | None = None,
        form: aiohttp.FormData | None = None,
        auth: bool = False,
        timeout: float = REQUEST_TIMEOUT,
    ) -> Any:
        try:
            async with self._session.request(
                method,
                self.url(path),
                json=json_body,
                data=form,
                headers=self._headers(auth),
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as err:
            raise Hal0ConnectionError(f"cannot reach the bridge at {self.base_url}: {err!r}") from err
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = None
        if status < 400:
            if body is None:
                raise Hal0ConnectionError(f"{method} {path}: answer is not JSON (HTTP {status})")
            return body
        error = _obj(_obj(body).get("error"))
        code = str(error.get("code") or f"http.{status}")
        message = str(error.get("message") or text[:200] or f"HTTP {status}")
        if status == 401:
            raise Hal0AuthError(message)
        raise Hal0ApiError(
            status,
            code,
            message,
            param=error.get("param") if isinstance(error.get("param"), str) else None,
            details=_obj(error.get("details")),
        )

    async def info(self) -> BridgeInfo:
        body = await self._request("GET", "/api/info")
        return BridgeInfo.from_dict(_obj(body))

    async def status(self) -> Status:
        body = await self._request("GET", "/api/comfyui/status")
        return Status.from_dict(_obj(body))

    async def check_auth(self) -> None:
        """Raise :class:`Hal0AuthError` when the token is missing or wrong (``/v1/models`` needs it)."""
        await self._request("GET", "/v1/models", auth=True)

    async def switchover(self, mode: str, *, force: bool = False, pin: bool | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"mode": mode}
        if force:
            body["force"] = True
        if pin is not None:
            body["pin"] = pin
        return _obj(await self._request("POST", "/api/comfyui/switchover", json_body=body, auth=True))

    async def set_pin(self, pinned: bool) -> dict[str, Any]:
        return _obj(await self._request("POST", "/api/comfyui/pin", json_body={"pinned": pinned}, auth=True))

    async def set_mqtt_discovery(self, enabled: bool) -> dict[str, Any]:
        """``POST /api/mqtt/discovery`` (API version 2): the bridge's own HA MQTT discovery on/off."""
        return _obj(await self._request("POST", "/api/mqtt/discovery", json_body={"enabled": enabled}, auth=True))

    async def cancel(self) -> dict[str, Any]:
        return _obj(await self._request("POST", "/api/comfyui/cancel", json_body={}, auth=True))

    async def generate_image(
        self, prompt: str, *, response_format: str = "url", **extras: Any
    ) -> GeneratedImage:
        """``POST /v1/images/generations``; ``extras`` are model, size, n, seed, steps, cfg, negative_prompt."""
        body = {"prompt": prompt, "response_format": response_format}
        body.update({k: v for k, v in extras.items() if v is not None})
        answer = await self._request(
            "POST", "/v1/images/generations", json_body=body, auth=True, timeout=GENERATE_TIMEOUT
        )
        return self._generated(_obj(answer))

    async def edit_image(
        self,
        prompt: str,
        image: bytes,
        *,
        mask: bytes | None = None,
        response_format: str = "url",
        **extras: Any,
    ) -> GeneratedImage:
        """``POST /v1/images/edits`` (multipart, as OpenAI clients send it); ``extras`` are model, size, n,
        seed, steps, cfg, negative_prompt and strength. The bridge tells the image's format by its bytes."""
        form = aiohttp.FormData(default_to_multipart=True)
        form.add_field("prompt", prompt)
        form.add_field("response_format", response_format)
        for key, value in extras.items():
            if value is not None:
                form.add_field(key, str(value))
        form.add_field("image", image, filename="image", content_type="application/octet-stream")
        if mask is not None:
            form.add_field("mask", mask, filename="mask.png", content_type="image/png")
        answer = await self._request("POST", "/v1/images/edits", form=form, auth=True, timeout=GENERATE_TIMEOUT)
        return self._generated(_obj(answer))

    def _generated(self, answer: dict[str, Any]) -> GeneratedImage:
        """One image answer (generation or edit), parsed once."""
        items = [d for d in answer.get("data") or [] if isinstance(d, dict)]
        meta = _obj(answer.get("_hal0"))
        # b64_json answers carry no URLs in data; the bridge caches those images too (_hal0.urls)
        raw_urls = [d["url"] for d in items if isinstance(d.get("url"), str)] or [
            u for u in meta.get("urls") or [] if isinstance(u, str)
        ]
        urls = tuple(self.url(u) for u in raw_urls)
        images: list[bytes] = []
        for item in items:
            if isinstance(item.get("b64_json"), str):
                images.append(base64.b64decode(item["b64_json"]))
        edit = meta.get("edit")
        return GeneratedImage(
            created=_int(answer.get("created")),
            urls=urls,
            images=tuple(images),
            model=meta.get("model") if isinstance(meta.get("model"), str) else None,
            seed=_int(meta.get("seed")),
            steps=_int(meta.get("steps")),
            cfg=_float(meta.get("cfg")),
            size=meta.get("size") if isinstance(meta.get("size"), str) else None,
            prompt_id=meta.get("prompt_id") if isinstance(meta.get("prompt_id"), str) else None,
            timings=_obj(meta.get("timings")),
            edit=edit if isinstance(edit, dict) else None,
        )

    async def fetch_image(self, url: str) -> bytes:
        """Bytes of a cached image (``/api/images/cache/<uuid>.png``).

        With a token the bridge signs image URLs, but a signature expires (``server.signed_url_ttl``)
        while the entity may show an older image: the bearer header opens it whatever the signature.
        """
        try:
            async with self._session.get(
                self.url(url), headers=self._headers(True), timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
            ) as resp:
                if resp.status != 200:
                    raise Hal0ApiError(resp.status, "image.cache_miss", f"HTTP {resp.status} for {url}")
                return await resp.read()
        except (aiohttp.ClientError, TimeoutError) as err:
            raise Hal0ConnectionError(f"cannot fetch {url}: {err!r}") from err

    async def events(self) -> AsyncIterator[SseEvent]:
        """Follow ``GET /api/events`` until it ends; raises :class:`Hal0ConnectionError` on failure.

        Parses the SSE wire format: ``event:``/``data:`` fields, a blank line ends an event, lines
        starting with ``:`` are keepalive comments.
        """
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=STREAM_CONNECT_TIMEOUT, sock_read=STREAM_READ_TIMEOUT)
        try:
            async with self._session.get(
                self.url("/api/events"),
                headers={"Accept": "text/event-stream", **self._headers(True)},
                timeout=timeout,
            ) as resp:
                if resp.status != 200:
                    raise Hal0ConnectionError(f"/api/events answered HTTP {resp.status}")
                event = "message"
                data_lines: list[str] = []
                async for raw in resp.content:
                    line = raw.decode("utf-8", "replace").rstrip("\r\n")
                    if not line:
                        if data_lines:
                            try:
                                data = json.loads("\n".join(data_lines))
                            except ValueError:
                                data = None
                            if isinstance(data, dict):
                                yield SseEvent(event, data)
                        event, data_lines = "message", []
                    elif line.startswith(":"):
                        continue
                    else:
                        name, _, value = line.partition(":")
                        value = value.removeprefix(" ")
                        if name == "event":
                            event = value
                        elif name == "data":
                            data_lines.append(value)
        except (aiohttp.ClientError, TimeoutError) as err:
            raise Hal0ConnectionError(f"event stream broke: {err!r}") from err
