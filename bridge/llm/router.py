"""Which LLM slot answers a call: routed by ``model``, the way llama-swap and OpenAI clients expect.

Rules, in order:
1. a ``model`` that a slot serves (its id or one of its aliases) goes to that slot;
2. no ``model``, and exactly one LLM slot: that slot;
3. a ``model`` nobody is known to serve, exactly one LLM slot, and that slot's list is unknown (it
   declares none and has never been seen ready): that slot, which decides for itself;
4. anything else: 404 ``llm.model_not_found`` with the models there are.
"""

from __future__ import annotations

from .. import errors
from ..errors import ApiError
from .models import ModelDirectory


def route(directory: ModelDirectory, model: str | None) -> str:
    """The slot name for ``model`` (see the module rules), or 404 ``llm.model_not_found``."""
    slots = directory.slot_names
    if model is not None:
        for name in slots:
            if any(model in m.names() for m in directory.models_of(name) or ()):
                return name
    if len(slots) == 1 and (model is None or directory.models_of(slots[0]) is None):
        return slots[0]
    available = list(directory.ids())
    if not slots:
        message = "no LLM slot is configured on this bridge"
    elif model is None:
        message = f"model is required: {len(slots)} LLM slots serve {', '.join(available) or 'unknown models'}"
    else:
        message = f"model {model!r} is not served here; available: {', '.join(available) or 'none known yet'}"
    raise ApiError(
        errors.LLM_MODEL_NOT_FOUND, message, param="model", details={"model": model, "available": available}
    )
