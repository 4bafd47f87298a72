"""HTTP client for ComfyUI's API, and the one exception family for everything that goes wrong there.

Every call is bounded by a timeout from :class:`~hal0_bridge.config.ComfyConfig`, so a dead or
blackholed ComfyUI turns into :class:`ComfyUnreachable` quickly instead of hanging a request or a
probe. Each exception knows its API answer (:meth:`ComfyUIError.to_api_error`): ComfyUI's own text
goes into the message, its raw error into ``details["comfyui"]``.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ..config import ComfyConfig
from ..errors import ENGINE_UNAVAILABLE, RENDER_TIMEOUT, UPSTREAM_FAILED, ApiError

_LOGGER = logging.getLogger(__name__)

# keys of an execution_error that carry tensors' reprs or other bulk nobody should see in an API answer
_BULKY_ERROR_KEYS = ("current_inputs", "current_outputs")
# how much of an unexpected response body we keep (plain-text 500s are short; HTML error pages are not)
_MAX_TEXT = 2000


# ---------------------------------------------------------------------------------------------
# data


@dataclass(frozen=True, slots=True)
class ImageRef:
    """Where ComfyUI keeps one output image (the triple ``GET /view`` takes)."""

    filename: str
    subfolder: str = ""
    type: str = "output"

    @classmethod
    def from_dict(cls, data: Any) -> ImageRef | None:
        if not isinstance(data, dict) or not isinstance(data.get("filename"), str) or not data["filename"]:
            return None
        return cls(str(data["filename"]), str(data.get("subfolder") or ""), str(data.get("type") or "output"))


@dataclass(frozen=True, slots=True)
class Submitted:
    prompt_id: str
    number: int


@dataclass(frozen=True, slots=True)
class QueueInfo:
    running_ids: tuple[str, ...] = ()
    pending_ids: tuple[str, ...] = ()

    @property
    def running(self) -> int:
        return len(self.running_ids)

    @property
    def pending(self) -> int:
        return len(self.pending_ids)

    def __contains__(self, prompt_id: object) -> bool:
        return prompt_id in self.running_ids or prompt_id in self.pending_ids


@dataclass(frozen=True, slots=True)
class RunResult:
    """A finished render: its output images (``type == "output"`` preferred), whether ComfyUI
    answered it entirely from its node cache, and seconds per phase: ``queue_s`` (waiting in
    ComfyUI's queue), ``exec_s`` (running), ``comfyui_s`` (submit until we learned it finished)."""

    prompt_id: str
    images: list[ImageRef] = field(default_factory=list)
    cached: bool = False
    timings: dict[str, float] = field(default_factory=dict)


def pick_images(outputs: Iterable[ImageRef]) -> list[ImageRef]:
    """Saved images when there are any; previews (``temp``) only for a graph that saves nothing.

    An img2img graph may show its input through a PreviewImage node: that is not a result.
    """
    refs = list(dict.fromkeys(outputs))  # de-duplicate, keep order
    saved = [r for r in refs if r.type == "output"]
    return saved or refs


def images_from_outputs(outputs: Any) -> list[ImageRef]:
    """Image refs from a history ``outputs`` mapping or one ``executed.output`` (``{"images": [...]}``)."""
    refs: list[ImageRef] = []
    if not isinstance(outputs, dict):
        return refs
    candidates = [outputs] if "images" in outputs else list(outputs.values())
    for node_output in candidates:
        if isinstance(node_output, dict) and isinstance(node_output.get("images"), list):
            refs.extend(r for r in map(ImageRef.from_dict, node_output["images"]) if r is not None)
    return refs


# ---------------------------------------------------------------------------------------------
# errors


class ComfyUIError(Exception):
    """Base of everything the ComfyUI client, websocket follower and facade raise."""

    def __init__(self, message: str, *, prompt_id: str | None = None, raw: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.prompt_id = prompt_id
        self.raw = raw

    def _details(self) -> dict[str, Any]:
        details: dict[str, Any] = {"comfyui": self.raw}
        if self.prompt_id:
            details["prompt_id"] = self.prompt_id
        return details

    def to_api_error(self) -> ApiError:
        return ApiError(UPSTREAM_FAILED, f"ComfyUI failed: {self.message}", details=self._details())


class ComfyUnreachable(ComfyUIError):
    """Connection refused, DNS failure, timeout or a socket that died: ComfyUI is not answering."""

    def to_api_error(self) -> ApiError:
        return ApiError(ENGINE_UNAVAILABLE, f"ComfyUI is not reachable: {self.message}", details=self._details())


class ComfyRejected(ComfyUIError):
    """``POST /prompt`` answered 400: the graph failed ComfyUI's validation."""

    def __init__(self, error: dict[str, Any], node_errors: dict[str, Any], *, status: int = 400) -> None:
        self.error = error
        self.node_errors = node_errors
        self.status = status
        super().__init__(_rejection_text(error, node_errors), raw={"error": error, "node_errors": node_errors})

    def to_api_error(self) -> ApiError:
        return ApiError(
            UPSTREAM_FAILED, f"ComfyUI rejected the workflow: {self.message}", details=self._details()
        )


class ComfyServerError(ComfyUIError):
    """An answer we did not expect: a plain-text 500, a 404 from ``/view``, a body that is not JSON."""

    def __init__(self, status: int, text: str, *, path: str = "") -> None:
        self.status = status
        self.text = text[:_MAX_TEXT]
        self.path = path
        shown = " ".join(self.text.split()) or "(empty body)"
        super().__init__(
            f"HTTP {status} from {path or 'ComfyUI'}: {shown}", raw={"status": status, "text": self.text, "path": path}
        )


class ComfyExecutionFailed(ComfyUIError):
    """The graph was accepted but a node raised while running (websocket ``execution_error``)."""

    def __init__(self, prompt_id: str, data: dict[str, Any]) -> None:
        self.exception_type = str(data.get("exception_type") or "")
        self.exception_message = str(data.get("exception_message") or "").strip()
        self.node_id = None if data.get("node_id") is None else str(data.get("node_id"))
        self.node_type = None if data.get("node_type") is None else str(data.get("node_type"))
        raw = {k: v for k, v in data.items() if k not in _BULKY_ERROR_KEYS}
        where = f" in node {self.node_id} ({self.node_type})" if self.node_id else ""
        what = ": ".join(p for p in (self.exception_type, self.exception_message) if p) or "execution error"
        super().__init__(f"{what}{where}", prompt_id=prompt_id, raw=raw)


class ComfyInterrupted(ComfyUIError):
    """The render was interrupted (ours on cancellation, or someone pressed Cancel in ComfyUI)."""

    def __init__(self, prompt_id: str, data: dict[str, Any] | None = None) -> None:
        data = data or {}
        self.node_id = None if data.get("node_id") is None else str(data.get("node_id"))
        self.node_type = None if data.get("node_type") is None else str(data.get("node_type"))
        where = f" at node {self.node_id} ({self.node_type})" if self.node_id else ""
        super().__init__(f"render was interrupted{where}", prompt_id=prompt_id, raw=data or None)


class ComfyLost(ComfyUIError):
    """ComfyUI went away or forgot the prompt mid-render (restart, queue deleted): a 502, not a 503,
    because the request did reach a working engine."""


class ComfyRenderTimeout(ComfyUIError):
    def __init__(self, prompt_id: str, timeout: float) -> None:
        self.timeout = timeout
        super().__init__(f"render {prompt_id} did not finish within {timeout:g} s", prompt_id=prompt_id)

    def to_api_error(self) -> ApiError:
        return ApiError(RENDER_TIMEOUT, f"ComfyUI timed out: {self.message}", details=self._details())


def _rejection_text(error: dict[str, Any], node_errors: dict[str, Any]) -> str:
    """ComfyUI's message, plus what the first failing node says (that is the useful part)."""
    message = str(error.get("message") or error.get("type") or "invalid prompt")
    details = str(error.get("details") or "")
    text = f"{message} ({details})" if details and details != message else message
    for node_id, entry in node_errors.items():
        if not isinstance(entry, dict):
            continue
        errs = entry.get("errors") or []
        first = errs[0] if errs and isinstance(errs[0], dict) else {}
        parts = [str(first.get(k)) for k in ("message", "details") if first.get(k)]
        cls = f" ({entry['class_type']})" if entry.get("class_type") else ""
        text += f"; node {node_id}{cls}: {': '.join(parts) or 'invalid'}"
        break
    return text


# ---------------------------------------------------------------------------------------------
# client


class ComfyUIClient:
    """Typed calls to one ComfyUI. Stateless apart from the shared session and our ``client_id``
    (which routes a prompt's websocket messages to our socket).

    ``session`` may be None until the owner's start (the facade exists before the event loop runs);
    calls without a session fail as :class:`ComfyUnreachable`.
    """

    def __init__(self, session: aiohttp.ClientSession | None, cfg: ComfyConfig, client_id: str) -> None:
        self.session = session
        self._cfg = cfg
        self.client_id = client_id
        self._request_timeout = aiohttp.ClientTimeout(
            total=cfg.request_timeout, sock_connect=cfg.connect_timeout
        )
        self._probe_timeout = aiohttp.ClientTimeout(
            total=cfg.probe_timeout, sock_connect=min(cfg.connect_timeout, cfg.probe_timeout)
        )

    @property
    def base_url(self) -> str:
        return self._cfg.url

    def _timeout(self, seconds: float | None) -> aiohttp.ClientTimeout:
        if seconds is None:
            return self._request_timeout
        return aiohttp.ClientTimeout(total=seconds, sock_connect=min(self._cfg.connect_timeout, seconds))

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, str] | None = None,
        timeout: aiohttp.ClientTimeout | None = None,
        expect: str = "json",
    ) -> tuple[int, Any]:
        """One request; returns (status, parsed body). Transport failures become ComfyUnreachable."""
        url = self._cfg.url + path
        if self.session is None or self.session.closed:
            raise ComfyUnreachable(f"{method} {path}: the ComfyUI client is not started", raw={"path": path})
        try:
            async with self.session.request(
                method, url, json=json_body, params=params, timeout=timeout or self._request_timeout
            ) as resp:
                body = await resp.read()
                status = resp.status
        except TimeoutError as err:
            raise ComfyUnreachable(f"{method} {path}: no answer in time", raw={"path": path}) from err
        except aiohttp.ClientError as err:
            raise ComfyUnreachable(f"{method} {path}: {err.__class__.__name__}: {err}", raw={"path": path}) from err
        except OSError as err:  # e.g. a malformed URL's host lookup failing outside aiohttp's wrapping
            raise ComfyUnreachable(f"{method} {path}: {err}", raw={"path": path}) from err
        if expect == "bytes":
            return status, body
        text = body.decode("utf-8", "replace")
        if expect == "text":
            return status, text
        try:
            return status, json.loads(text) if text.strip() else None
        except ValueError:
            return status, text

    def _ok_json(self, status: int, body: Any, path: str) -> Any:
        if status != 200 or isinstance(body, str):
            raise ComfyServerError(status, body if isinstance(body, str) else json.dumps(body), path=path)
        return body

    async def submit(self, graph: dict[str, Any], *, prompt_id: str | None = None) -> Submitted:
        """Queue a graph. We choose the prompt_id (ComfyUI honours it), so the websocket follower can
        track it before ComfyUI even answers."""
        pid = prompt_id or str(uuid.uuid4())
        payload = {"prompt": graph, "client_id": self.client_id, "prompt_id": pid}
        status, body = await self._call("POST", "/prompt", json_body=payload)
        if status == 400 and isinstance(body, dict):
            error = body.get("error")
            if not isinstance(error, dict):  # older ComfyUI answered {"error": "text"}
                error = {"type": "invalid_prompt", "message": str(error or "invalid prompt")}
            node_errors = body.get("node_errors") if isinstance(body.get("node_errors"), dict) else {}
            raise ComfyRejected(error, node_errors, status=status)
        body = self._ok_json(status, body, "/prompt")
        if not isinstance(body, dict) or not isinstance(body.get("prompt_id"), str):
            raise ComfyServerError(status, json.dumps(body), path="/prompt")
        number = body.get("number")
        return Submitted(body["prompt_id"], number if isinstance(number, int) else 0)

    async def history(self, prompt_id: str, *, timeout: float | None = None) -> dict[str, Any] | None:
        """The history entry of one prompt; None while it runs, is queued, or is unknown (``{}``)."""
        path = f"/history/{prompt_id}"
        status, body = await self._call("GET", path, timeout=self._timeout(timeout))
        body = self._ok_json(status, body, path)
        if not isinstance(body, dict):
            raise ComfyServerError(status, json.dumps(body), path=path)
        entry = body.get(prompt_id)
        return entry if isinstance(entry, dict) else None

    async def view(self, ref: ImageRef) -> bytes:
        params = {"filename": ref.filename, "subfolder": ref.subfolder, "type": ref.type}
        status, body = await self._call("GET", "/view", params=params, expect="bytes")
        if status != 200:
            raise ComfyServerError(status, body.decode("utf-8", "replace"), path=f"/view {ref.filename}")
        return body

    async def queue(self, *, timeout: float | None = None) -> QueueInfo:
        status, body = await self._call("GET", "/queue", timeout=self._timeout(timeout))
        body = self._ok_json(status, body, "/queue")
        if not isinstance(body, dict):
            raise ComfyServerError(status, json.dumps(body), path="/queue")
        return QueueInfo(_queue_ids(body.get("queue_running")), _queue_ids(body.get("queue_pending")))

    async def system_stats(self, timeout: float | None = None) -> dict[str, Any]:
        """``GET /system_stats``; with ``timeout`` None this is a probe (``probe_timeout``)."""
        t = self._probe_timeout if timeout is None else self._timeout(timeout)
        status, body = await self._call("GET", "/system_stats", timeout=t)
        body = self._ok_json(status, body, "/system_stats")
        if not isinstance(body, dict):
            raise ComfyServerError(status, json.dumps(body), path="/system_stats")
        return body

    async def free(self, unload_models: bool = True, free_memory: bool = True) -> None:
        await self._post_empty("/free", {"unload_models": unload_models, "free_memory": free_memory})

    async def interrupt(self, prompt_id: str | None = None) -> None:
        """Interrupt ``prompt_id`` if it is the one running (a no-op otherwise), or whatever runs."""
        await self._post_empty("/interrupt", {"prompt_id": prompt_id} if prompt_id else None)

    async def clear_queue(self) -> None:
        """Drop every pending prompt; the running one keeps running (interrupt it separately)."""
        await self._post_empty("/queue", {"clear": True})

    async def delete_queued(self, ids: Iterable[str]) -> None:
        await self._post_empty("/queue", {"delete": list(ids)})

    async def _post_empty(self, path: str, body: Any) -> None:
        status, text = await self._call("POST", path, json_body=body, expect="text")
        if status != 200:
            raise ComfyServerError(status, text, path=path)


def _queue_ids(items: Any) -> tuple[str, ...]:
    """Queue items are arrays ``[number, prompt_id, prompt, extra_data, outputs_to_execute]``."""
    if not isinstance(items, list):
        return ()
    return tuple(str(i[1]) for i in items if isinstance(i, (list, tuple)) and len(i) > 1)
