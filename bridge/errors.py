"""Every error the bridge can answer with, in one place.

Each code maps to one HTTP status and an OpenAI-style ``type``; routes and services raise
:class:`ApiError` and one middleware renders the envelope (``bridge/web.py``). MQTT request/response
uses the same codes, so automations see what REST clients see.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ErrorCode:
    code: str
    status: int
    type: str
    retry_after: int | None = None  # seconds; a 503 with a retry hint also sends Retry-After


def _c(code: str, status: int, type_: str = "invalid_request_error", retry_after: int | None = None) -> ErrorCode:
    return ErrorCode(code, status, type_, retry_after)


# request shape
INVALID_JSON = _c("request.invalid_json", 400)
BODY_NOT_OBJECT = _c("request.body_not_object", 422)
UNKNOWN_FIELD = _c("request.unknown_field", 422)
BODY_TOO_LARGE = _c("request.body_too_large", 413)
NOT_FOUND = _c("request.not_found", 404, "not_found_error")
METHOD_NOT_ALLOWED = _c("request.method_not_allowed", 405)
UNSUPPORTED_MEDIA_TYPE = _c("request.unsupported_media_type", 415)
INVALID_FORM = _c("request.invalid_form", 400)
UNAUTHORIZED = _c("auth.unauthorized", 401, "authentication_error")
# the trust model (docs/security.md): browsers, media types, signed image URLs
FORBIDDEN_ORIGIN = _c("request.forbidden_origin", 403, "permission_error")
SIGNATURE_EXPIRED = _c("auth.signature_expired", 401, "authentication_error")
SIGNATURE_INVALID = _c("auth.invalid_signature", 403, "permission_error")
INTERNAL = _c("internal.error", 500, "server_error")

# image generation (OpenAI route)
PROMPT_REQUIRED = _c("image.prompt_required", 422)
MODEL_NOT_CURATED = _c("image.model_not_curated", 404, "not_found_error")
INVALID_SIZE = _c("image.invalid_size", 422)
INVALID_N = _c("image.invalid_n", 422)
INVALID_PARAMETER = _c("image.invalid_parameter", 422)
WORKFLOW_INVALID = _c("image.workflow_invalid", 422)
UPSTREAM_FAILED = _c("image.upstream_failed", 502, "upstream_error")
ENGINE_UNAVAILABLE = _c("image.engine_unavailable", 503, "upstream_error", retry_after=5)
RENDER_TIMEOUT = _c("image.timeout", 504, "upstream_error")
CACHE_MISS = _c("image.cache_miss", 404, "not_found_error")
CACHE_WRITE_FAILED = _c("image.cache_write_failed", 507, "server_error")
# image edits (multipart uploads)
INVALID_IMAGE = _c("image.invalid_image", 422)
INVALID_MASK = _c("image.invalid_mask", 422)
UPLOAD_TOO_LARGE = _c("image.upload_too_large", 413)

# GPU arbiter
INVALID_MODE = _c("comfyui.invalid_mode", 422)
INVALID_PIN = _c("comfyui.invalid_pin", 422)
SWITCH_IN_PROGRESS = _c("comfyui.switch_in_progress", 409, "conflict_error", retry_after=2)
BUSY = _c("comfyui.busy", 409, "conflict_error")
PINNED = _c("comfyui.pinned", 409, "conflict_error")
NOT_GENERATION = _c("comfyui.not_generation", 409, "conflict_error")  # pin: true outside generation mode
ARBITER_UNAVAILABLE = _c("comfyui.arbiter_unavailable", 503, "server_error")
SWITCH_FAILED = _c("comfyui.switch_failed", 503, "server_error", retry_after=10)
# generation mode is pinned, or llm.auto_switch is off: an LLM request cannot move the GPU
IMAGE_MODE = _c("gpu.image_mode", 503, "server_error", retry_after=30)

# LLM proxy (OpenAI route)
LLM_INVALID_REQUEST = _c("llm.invalid_request", 422)  # model / stream of the wrong type (the bridge routes on them)
LLM_MODEL_NOT_FOUND = _c("llm.model_not_found", 404, "not_found_error")
LLM_QUEUE_FULL = _c("llm.queue_full", 429, "rate_limit_error", retry_after=5)
LLM_UPSTREAM_FAILED = _c("llm.upstream_failed", 502, "upstream_error")
LLM_WAIT_TIMEOUT = _c("llm.wait_timeout", 503, "server_error", retry_after=10)

# MQTT settings changed through the API
INVALID_DISCOVERY = _c("mqtt.invalid_discovery", 422)
MQTT_DISABLED = _c("mqtt.disabled", 409, "conflict_error")


class ApiError(Exception):
    """An answer in the documented error envelope.

    ``message`` is for people; ``param`` names the offending request field (OpenAI's convention);
    ``details`` carries machine-readable context (ComfyUI's own error, queue counts, ...).
    """

    def __init__(
        self,
        error: ErrorCode,
        message: str,
        *,
        param: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.error = error
        self.message = message
        self.param = param
        self.details = details or {}

    @property
    def status(self) -> int:
        return self.error.status

    @property
    def code(self) -> str:
        return self.error.code

    def envelope(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.error.code,
                "message": self.message,
                "type": self.error.type,
                "param": self.param,
                "details": self.details,
            }
        }

    def headers(self) -> dict[str, str]:
        if self.error.retry_after is None:
            return {}
        return {"Retry-After": str(self.error.retry_after)}
