"""A prompt's outcome from ComfyUI's own record: ``GET /history/<id>``."""

from __future__ import annotations

from typing import Any

from .client import RunResult, images_from_outputs, pick_images
from .errors import ComfyExecutionFailed, ComfyInterrupted, ComfyUIError


def result_from_history(prompt_id: str, entry: dict[str, Any] | None) -> RunResult | ComfyUIError | None:
    """Outcome from a ``GET /history/<id>`` entry; None while there is none (queued, running, unknown).

    Success only when the entry's status says so (``status_str == "success"``, ``completed``); ComfyUI
    writes the entry once, in ``PromptQueue.task_done``, so an entry is always final.
    """
    if not isinstance(entry, dict):
        return None
    raw_status = entry.get("status")
    status: dict[str, Any] = raw_status if isinstance(raw_status, dict) else {}
    messages = [
        (m[0], m[1])
        for m in status.get("messages") or []
        if isinstance(m, (list, tuple)) and len(m) == 2 and isinstance(m[1], dict)
    ]
    by_type = {kind: data for kind, data in messages}
    status_str = status.get("status_str")
    if "execution_interrupted" in by_type:
        return ComfyInterrupted(prompt_id, by_type["execution_interrupted"])
    if "execution_error" in by_type:
        return ComfyExecutionFailed(prompt_id, by_type["execution_error"])
    if status_str == "error":
        return ComfyExecutionFailed(prompt_id, {"exception_message": "ComfyUI reports the prompt failed"})
    if status_str != "success" or status.get("completed") is not True:
        # an entry exists only once task_done ran (main.py prompt_worker), and it always carries
        # ExecutionStatus(status_str, completed, messages): anything else is no success we can vouch for
        return ComfyExecutionFailed(
            prompt_id, {"exception_message": f"ComfyUI's history does not record a success (status {status!r})"}
        )
    raw_outputs = entry.get("outputs")
    outputs: dict[str, Any] = raw_outputs if isinstance(raw_outputs, dict) else {}
    cached = set(by_type.get("execution_cached", {}).get("nodes") or [])
    timings: dict[str, float] = {}
    start, end = by_type.get("execution_start", {}), by_type.get("execution_success", {})
    if isinstance(start.get("timestamp"), (int, float)) and isinstance(end.get("timestamp"), (int, float)):
        timings["exec_s"] = round((end["timestamp"] - start["timestamp"]) / 1000, 3)
    return RunResult(
        prompt_id,
        pick_images(images_from_outputs(outputs)),
        cached=bool(outputs) and set(outputs) <= {str(n) for n in cached},
        timings=timings,
    )
