"""The one exception family for everything that goes wrong with ComfyUI.

Raised by the HTTP client, the websocket follower and the facade. Each exception knows its API
answer (:meth:`ComfyUIError.to_api_error`): ComfyUI's own text goes into the message, its raw error
into ``details["comfyui"]``.
"""

from __future__ import annotations

from typing import Any

from ..errors import ENGINE_UNAVAILABLE, RENDER_TIMEOUT, UPSTREAM_FAILED, ApiError

# keys of an execution_error that carry tensors' reprs or other bulk nobody should see in an API answer
_BULKY_ERROR_KEYS = ("current_inputs", "current_outputs")
# how much of an unexpected response body we keep (plain-text 500s are short; HTML error pages are not)
_MAX_TEXT = 2000



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
