"""HTTP client for ComfyUI's API and the typed shapes of its answers.

Every call is bounded by a timeout from :class:`~hal0_bridge.config.ComfyConfig`, so a dead or
blackholed ComfyUI turns into :class:`~.errors.ComfyUnreachable` quickly instead of hanging a request
or a probe.
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
from .errors import ComfyRejected, ComfyServerError, ComfyUnreachable

_LOGGER = logging.getLogger(__name__)


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
class Uploaded:
    """Where ``POST /upload/image`` put a file (its answer: ``name``, ``subfolder``, ``type``)."""

    name: str
    subfolder: str
    type: str

    @property
    def load_name(self) -> str:
        """The name LoadImage takes: ``sub/name`` for the input folder, ``sub/name [temp]`` otherwise
        (``folder_paths.annotated_filepath``)."""
        path = f"{self.subfolder}/{self.name}" if self.subfolder else self.name
        return path if self.type == "input" else f"{path} [{self.type}]"


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
        data: Any = None,
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
                method, url, json=json_body, data=data, params=params, timeout=timeout or self._request_timeout
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
            node_errors = body.get("node_errors")
            raise ComfyRejected(error, node_errors if isinstance(node_errors, dict) else {}, status=status)
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

    async def newest_prompt(self, *, timeout: float | None = None) -> str | None:
        """The id of the newest prompt in ComfyUI's history (``GET /history?max_items=1``), None when empty.

        History is ComfyUI's in-memory record since it started, one entry per finished prompt
        (history_max_items_2.json): an unchanged newest id means no prompt ran in between.
        """
        status, body = await self._call("GET", "/history", params={"max_items": "1"}, timeout=self._timeout(timeout))
        body = self._ok_json(status, body, "/history")
        if not isinstance(body, dict):
            raise ComfyServerError(status, json.dumps(body), path="/history")
        return next(reversed(body), None) if body else None

    async def view(self, ref: ImageRef) -> bytes:
        params = {"filename": ref.filename, "subfolder": ref.subfolder, "type": ref.type}
        status, body = await self._call("GET", "/view", params=params, expect="bytes")
        if status != 200:
            raise ComfyServerError(status, body.decode("utf-8", "replace"), path=f"/view {ref.filename}")
        assert isinstance(body, bytes)  # expect="bytes"
        return body

    async def upload_image(
        self, data: bytes, filename: str, *, subfolder: str = "", type_: str = "input", overwrite: bool = False
    ) -> Uploaded:
        """``POST /upload/image`` (multipart ``image``, ``subfolder``, ``type``, ``overwrite``), as
        ComfyUI's ``server.py`` ``image_upload`` takes it (upload_image_*.json): without ``overwrite``
        a name that exists with other bytes becomes ``name (1).ext``."""
        form = aiohttp.FormData()
        form.add_field("image", data, filename=filename, content_type="application/octet-stream")
        form.add_field("subfolder", subfolder)
        form.add_field("type", type_)
        form.add_field("overwrite", "true" if overwrite else "false")
        status, body = await self._call("POST", "/upload/image", data=form)
        body = self._ok_json(status, body, "/upload/image")
        if not isinstance(body, dict) or not isinstance(body.get("name"), str) or not body["name"]:
            raise ComfyServerError(status, json.dumps(body), path="/upload/image")
        return Uploaded(body["name"], str(body.get("subfolder") or ""), str(body.get("type") or type_))

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
