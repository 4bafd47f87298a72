"""A ComfyUI 0.3.64 stand-in for tests: an aiohttp server that answers like the real one.

Every behaviour here is taken from the recordings in ``tests/captures/`` (see its README);
where a recording does not show a detail, the stand-in follows ComfyUI's own source at the
recorded commit (``server.py``, ``main.py``, ``execution.py``, ``nodes.py``,
``comfy_execution/graph.py``) and says so; ``tests/support/STANDIN-NOTES.md`` lists those facts.
It is a test fixture, meant to be read: one small function per behaviour, each naming the
capture it reproduces. Pillow work lives in ``tests.support.standin_media``.

What it does:
* the HTTP routes the bridge uses, also under ``/api/...``;
* validation of submitted graphs against ``object_info_*_subset.json`` (+ three classes written
  from nodes.py: ``SOURCE_NODES``) with the recorded 400 shapes (``prompt_error_*.json``);
* a real queue with one worker, a node cache (identical prompts come back "cached"),
  per-step progress, interrupt, delete/clear, history;
* real PNG files (``tests.support.png``) of the requested size and batch, served by ``/view``,
  with its ``preview=`` and ``channel=`` conversions;
* ``/upload/image`` and ``/upload/mask`` into the input folder; LoadImage/LoadImageMask decode
  those files (size, frames, MASK = 1 - alpha), the output image follows the latent, and a masked
  render keeps the source outside the mask (img2img and inpainting graphs);
* latent previews (``preview_method``: one JPEG frame per sampler step, event 1 or 4);
* the websocket protocol with its "who receives what" rules (``ws_*.jsonl``);
* ``GET /`` (index page) and the frontend's static files, with ComfyUI's cache and origin middlewares;
* fault injection and counters, in-process (``ComfyStandIn``) and over HTTP (``/_standin/...``):
  uninterruptible loads/decodes, /free applied only between prompts, a fake amdgpu sysfs, lost
  or cut-off websocket messages, a hung node, slow HTTP.

Run it as a process: ``python -m tests.support.comfyui_standin --port 8188`` prints
``READY <url>`` once listening and exits cleanly on SIGTERM.

Not reproduced: node classes outside the object_info subsets and ``SOURCE_NODES`` (they are
rejected as unknown, so templates must stay within them); real pixels from sampling (images are
seeded noise; only a masked render's kept area is real); TAESD previews (no decoders: every
preview method gives latent2rgb frames, as ComfyUI does without them); ``/view``'s asset-hash names;
``--max-upload-size`` other than the default 100 MB; ComfyUI's own mimetypes for ``.js``.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import dataclasses
import hashlib
import heapq
import ipaddress
import json
import mimetypes
import os
import random
import shutil
import signal
import socket
import string
import struct
import sys
import tempfile
import time
import traceback
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler

from tests.support import standin_media as media

CAPTURES = Path(__file__).resolve().parents[1] / "captures"
REPO_ROOT = Path(__file__).resolve().parents[2]
WEB_ROOT = Path(__file__).resolve().parent / "standin_web"  # a tiny stand-in for the frontend package

# aiohttp's page for an unhandled exception, which is what ComfyUI serves for a body that
# is not JSON (prompt_error_malformed_json.json, prompt_error_empty_body.json,
# free_malformed_response.txt).
SERVER_TROUBLE = "500 Internal Server Error\n\nServer got itself in trouble"

# Binary websocket event types (README "Websocket files").
PREVIEW_IMAGE = 1
PREVIEW_IMAGE_WITH_METADATA = 4
JPEG_IMAGE_TYPE = 1
PNG_IMAGE_TYPE = 2
IMAGE_MIME = {JPEG_IMAGE_TYPE: "image/jpeg", PNG_IMAGE_TYPE: "image/png"}

# --preview-method values (comfy/cli_args.py LatentPreviewMethod). The stand-in has no TAESD
# decoders, so every method but "none" gives latent2rgb frames, as latent_preview.get_previewer does.
PREVIEW_METHODS = ("none", "auto", "latent2rgb", "taesd")

DEFAULT_CHECKPOINTS = ("sd_xl_turbo_1.0_fp16.safetensors", "v1-5-pruned-emaonly.safetensors")
DEFAULT_FAIL_MESSAGE = (
    "Given groups=1, weight of size [4, 4, 1, 1], expected input[1, 16, 8, 8] "
    "to have 4 channels, but got 16 channels instead\n"
)


def load_capture(name: str) -> Any:
    """A capture file's JSON (``.json``) or its list of messages (``.jsonl``)."""
    text = (CAPTURES / name).read_text()
    if name.endswith(".jsonl"):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)


def now_ms() -> int:
    """ComfyUI's message timestamps: integer milliseconds since the epoch."""
    return int(time.time() * 1000)


# --------------------------------------------------------------------------- settings


@dataclass
class StandInSettings:
    """Everything a test may change, in-process or with ``POST /_standin/config``."""

    step_seconds: float = 0.0  # time per sampler step
    render_seconds: float = 0.0  # extra time once per sampler node
    # Uninterruptible work: ComfyUI checks for an interrupt only between nodes and at sampler steps
    # (comfy.model_management.throw_exception_if_processing_interrupted via the progress hook).
    node_seconds: float = 0.0  # time per executed non-sampler node
    load_seconds: float = 0.0  # model load before sampling when models are not loaded
    decode_seconds: float = 0.0  # VAEDecode
    unload_seconds: float = 0.0  # the worker applying unload_models; VRAM use falls in steps meanwhile
    hang_class_type: str = ""  # a node of this class blocks (uninterruptibly) until this is changed: a GPU hang
    checkpoints: list[str] = field(default_factory=lambda: list(DEFAULT_CHECKPOINTS))
    loras: list[str] = field(default_factory=list)
    ram_total: int = 25276510208  # system_stats.json
    ram_free: int = 24012574720
    vram_total: int = 25276510208
    vram_free: int = 24012574720
    model_vram_bytes: int = 0  # taken from vram_free while models are loaded
    gtt_sysfs_dir: str = ""  # a fake /sys/class/drm: card0/device/mem_info_gtt_{used,total} kept in step
    preview_method: str = "none"  # --preview-method: "none", or latent2rgb JPEG frames per sampler step
    preview_size: int = 512  # --preview-size
    fail_next_prompts: int = 0  # the next N prompts fail at execution time
    fail_class_type: str = "VAEDecode"  # where an injected failure happens (else the output node)
    fail_message: str = DEFAULT_FAIL_MESSAGE  # ws_messages_error.jsonl
    fail_exception_type: str = "RuntimeError"
    post_prompt_500: int = 0  # the next N POST /prompt answer the plain-text 500
    ws_silent: bool = False  # accept websockets but never send on them
    ws_reject: bool = False  # refuse websocket upgrades (503)
    http_delay_seconds: float = 0.0  # delay before every ComfyUI route answers
    system_stats_delay_seconds: float = 0.0  # extra delay on /system_stats
    free_500: int = 0  # the next N POST /free answer ComfyUI's plain-text 500 (an exception in the handler)
    # Lost websocket messages (history stays true: ComfyUI records the outcome regardless of sockets).
    drop_messages: list[str] = field(default_factory=list)  # message types ("binary" = frames) not sent...
    drop_messages_prompts: int = 0  # ...for the next N prompts that run
    ws_close_after: str = ""  # close every websocket right after the next prompt sends this message type

    _choices: ClassVar[dict[str, tuple[str, ...]]] = {"preview_method": PREVIEW_METHODS}

    def update(self, changes: dict[str, Any]) -> None:
        """Apply ``changes``; unknown names and wrong types raise ValueError (no partial update)."""
        known = {f.name: f for f in dataclasses.fields(self)}
        checked: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown setting {name!r}")
            current = getattr(self, name)
            if isinstance(current, bool):
                ok = isinstance(value, bool)
            elif isinstance(current, int):
                ok = isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer()
                value = int(value) if ok else value
            elif isinstance(current, float):
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
                value = float(value) if ok else value
            elif isinstance(current, list):
                ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            else:
                ok = isinstance(value, type(current))
            if ok and name in self._choices:
                ok = value in self._choices[name]
            if not ok:
                raise ValueError(f"setting {name!r}: bad value {value!r}")
            checked[name] = list(value) if isinstance(value, list) else value
        for name, value in checked.items():
            setattr(self, name, value)


@dataclass
class StandInCounters:
    """What the stand-in was asked to do, for assertions."""

    prompts_submitted: int = 0  # every POST /prompt
    prompts_accepted: int = 0
    prompts_rejected: int = 0  # 400 answers
    prompts_started: int = 0
    prompts_succeeded: int = 0
    prompts_failed: int = 0
    prompts_interrupted: int = 0
    free_calls: int = 0
    free_bodies: list[Any] = field(default_factory=list)
    interrupt_calls: int = 0
    queue_posts: int = 0
    history_requests: int = 0
    view_requests: int = 0
    uploads: int = 0  # POST /upload/image and /upload/mask
    system_stats_requests: int = 0
    ws_connects: int = 0


# --------------------------------------------------------------------------- node definitions


def _source_node(name: str, display_name: str, category: str, required: dict[str, list], output: list[str]) -> dict:
    """An /object_info entry (server.node_info's shape, as the captures show it) for a class written from source."""
    return {
        "input": {"required": required},
        "input_order": {"required": list(required)},
        "output": output,
        "output_is_list": [False] * len(output),
        "output_name": list(output),
        "name": name,
        "display_name": display_name,
        "description": "",
        "python_module": "nodes",
        "category": category,
        "output_node": False,
    }


# Classes the two object_info captures do not include, from ComfyUI's nodes.py (INPUT_TYPES,
# RETURN_TYPES, CATEGORY and NODE_DISPLAY_NAME_MAPPINGS of VAEEncodeForInpaint, SetLatentNoiseMask,
# LoadImageMask, RepeatLatentBatch; see STANDIN-NOTES.md for the versions read). All four exist in the
# recorded server (object_info_node_names.json).
SOURCE_NODES: dict[str, dict] = {
    "VAEEncodeForInpaint": _source_node(
        "VAEEncodeForInpaint", "VAE Encode (for Inpainting)", "latent/inpaint",
        {"pixels": ["IMAGE"], "vae": ["VAE"], "mask": ["MASK"],
         "grow_mask_by": ["INT", {"default": 6, "min": 0, "max": 64, "step": 1}]},
        ["LATENT"],
    ),
    "SetLatentNoiseMask": _source_node(
        "SetLatentNoiseMask", "Set Latent Noise Mask", "latent/inpaint",
        {"samples": ["LATENT"], "mask": ["MASK"]}, ["LATENT"],
    ),
    "LoadImageMask": _source_node(
        "LoadImageMask", "Load Image (as Mask)", "mask",
        {"image": [[], {"image_upload": True}], "channel": [["alpha", "red", "green", "blue"]]}, ["MASK"],
    ),
    "RepeatLatentBatch": _source_node(
        "RepeatLatentBatch", "Repeat Latent Batch", "latent/batch",
        {"samples": ["LATENT"], "amount": ["INT", {"default": 1, "min": 1, "max": 64}]}, ["LATENT"],
    ),
}  # fmt: skip

# Classes whose VALIDATE_INPUTS takes ``image``: that input skips the combo check and is checked
# with folder_paths.exists_annotated_filepath instead (execution.validate_inputs).
IMAGE_FILE_INPUTS = {"LoadImage": ["image"], "LoadImageMask": ["image"]}


def image_files(names: list[str]) -> list[str]:
    """folder_paths.filter_files_content_types(names, ["image"]): by the extension's MIME type."""
    return [name for name in names if (mimetypes.guess_type(name, strict=False)[0] or "").split("/")[0] == "image"]


class NodeRegistry:
    """The node classes the stand-in knows: object_info_core_subset.json + object_info_extra_subset.json
    + SOURCE_NODES.

    Combo lists that depend on the machine (checkpoints, loras, input images) come from the
    settings and the input folder, as ComfyUI builds them from its model folders: LoadImage lists
    the input folder's top-level image files, LoadImageMask every top-level file (nodes.py).
    """

    _base: dict[str, dict] | None = None

    def __init__(self, checkpoints: list[str], loras: list[str], input_files: list[str]) -> None:
        if NodeRegistry._base is None:
            base = load_capture("object_info_core_subset.json")
            base.update(load_capture("object_info_extra_subset.json"))
            base.update(SOURCE_NODES)
            NodeRegistry._base = base
        self.info = copy.deepcopy(NodeRegistry._base)
        self._set_combo("CheckpointLoaderSimple", "ckpt_name", sorted(checkpoints))
        self._set_combo("LoraLoader", "lora_name", sorted(loras))
        self._set_combo("LoadImage", "image", sorted(image_files(input_files)))
        self._set_combo("LoadImageMask", "image", sorted(input_files))

    def _set_combo(self, class_type: str, input_name: str, options: list[str]) -> None:
        self.info[class_type]["input"]["required"][input_name][0] = options

    def exists(self, class_type: Any) -> bool:
        return isinstance(class_type, str) and class_type in self.info

    def is_output(self, class_type: str) -> bool:
        return bool(self.info[class_type].get("output_node"))

    def return_types(self, class_type: str) -> tuple:
        """A tuple like ComfyUI's RETURN_TYPES (so a bad index fails the same way)."""
        return tuple(self.info[class_type]["output"])

    def input_names(self, class_type: str) -> list[str]:
        """Required then optional inputs, in declaration order (hidden ones are not validated)."""
        inputs = self.info[class_type]["input"]
        return [*inputs.get("required", {}), *inputs.get("optional", {})]

    def input_info(self, class_type: str, name: str) -> tuple[Any, str, dict]:
        """(input_type, category, extra_info) as ComfyUI's get_input_info returns them."""
        inputs = self.info[class_type]["input"]
        for category in ("required", "optional"):
            spec = inputs.get(category, {}).get(name)
            if spec is not None:
                extra = spec[1] if len(spec) > 1 else {}
                return spec[0], category, extra
        return None, "", {}


# --------------------------------------------------------------------------- validation
#
# A direct transcription of execution.validate_prompt / validate_inputs at the recorded commit:
# the output shapes are those of prompt_error_*.json, and the walk order (outputs first, links
# depth-first) decides which node an error is filed under.


def _type_matches(received: Any, expected: Any) -> bool:
    """execution.validate_node_input: equal, or overlapping comma lists, or '*'."""
    if not received != expected:
        return True
    if not isinstance(received, str) or not isinstance(expected, str):
        return False
    got = {t.strip() for t in received.split(",")}
    want = {t.strip() for t in expected.split(",")}
    return "*" in got or "*" in want or bool(got & want)


def _convert(input_type: Any, val: Any) -> Any:
    """The widget conversions ComfyUI applies before range checks (int('many') raises)."""
    if input_type == "INT":
        return int(val)
    if input_type == "FLOAT":
        return float(val)
    if input_type == "STRING":
        return str(val)
    if input_type == "BOOLEAN":
        return bool(val)
    return val


class Validator:
    """Validates one prompt the way ComfyUI does; ``input_exists`` backs LoadImage's own check."""

    def __init__(self, registry: NodeRegistry, input_exists: Callable[[str], bool]) -> None:
        self.registry = registry
        self.input_exists = input_exists

    def validate_prompt(self, prompt: dict, targets: list[str] | None = None) -> tuple[bool, dict | None, list[str], dict]:
        """(valid, error, good_outputs, node_errors) like execution.validate_prompt.

        ``targets`` is the body's ``partial_execution_targets``: only those outputs run.
        """
        outputs: list[str] = []
        for node_id in prompt:
            node = prompt[node_id]
            if "class_type" not in node:
                return False, self._invalid_prompt("Cannot execute because a node is missing the class_type property.", node_id), [], {}
            class_type = node["class_type"]
            if not self.registry.exists(class_type):
                return False, self._invalid_prompt(f"Cannot execute because node {class_type} does not exist.", node_id), [], {}
            if self.registry.is_output(class_type) and (targets is None or node_id in targets):
                outputs.append(node_id)
        if not outputs:
            return False, _prompt_error("prompt_no_outputs", "Prompt has no outputs"), [], {}

        good: list[str] = []
        failures: list[tuple[str, list]] = []
        node_errors: dict[str, dict] = {}
        validated: dict[str, tuple] = {}
        for output_id in outputs:
            try:
                valid, reasons, _ = self.validate_inputs(prompt, output_id, validated)
            except Exception as ex:  # noqa: BLE001 - mirrors ComfyUI's catch-all
                valid = False
                reasons = [_exception_reason("exception_during_validation", "Exception when validating node", ex)]
                validated[output_id] = (False, reasons, output_id)
            if valid is True:
                good.append(output_id)
                continue
            failures.append((output_id, reasons))
            for node_id, (ok, node_reasons, _) in validated.items():
                if ok is not True and node_reasons:
                    entry = node_errors.setdefault(
                        node_id,
                        {"errors": node_reasons, "dependent_outputs": [], "class_type": prompt[node_id]["class_type"]},
                    )
                    entry["dependent_outputs"].append(output_id)
        if not good:
            details = "\n".join(f"{r['message']}: {r['details']}" for _, reasons in failures for r in reasons)
            error = _prompt_error("prompt_outputs_failed_validation", "Prompt outputs failed validation", details)
            return False, error, [], node_errors
        return True, None, good, node_errors

    @staticmethod
    def _invalid_prompt(message: str, node_id: str) -> dict:
        """prompt_error_unknown_node.json / prompt_error_missing_class_type.json."""
        return {"type": "invalid_prompt", "message": message, "details": f"Node ID '#{node_id}'", "extra_info": {}}

    def validate_inputs(self, prompt: dict, node_id: str, validated: dict) -> tuple:
        """One node: links first-class (recursing), widgets converted and range/list checked."""
        if node_id in validated:
            return validated[node_id]
        inputs = prompt[node_id]["inputs"]
        class_type = prompt[node_id]["class_type"]
        custom_inputs = IMAGE_FILE_INPUTS.get(class_type, [])
        errors: list[dict] = []
        valid = True
        for name in self.registry.input_names(class_type):
            input_type, category, extra = self.registry.input_info(class_type, name)
            info = [input_type, extra]
            if name not in inputs:
                if category == "required":
                    errors.append(
                        {
                            "type": "required_input_missing",
                            "message": "Required input is missing",
                            "details": f"{name}",
                            "extra_info": {"input_name": name},
                        }
                    )
                continue
            val = inputs[name]
            if isinstance(val, list):
                if not self._check_link(prompt, name, val, input_type, info, errors, validated):
                    valid = False
                continue
            error = self._check_widget(inputs, name, val, input_type, extra, info, custom_inputs)
            if error is not None:
                errors.append(error)
        for name in custom_inputs:
            if name in inputs and not isinstance(inputs[name], list) and not self.input_exists(str(inputs[name])):
                errors.append(
                    {
                        "type": "custom_validation_failed",
                        "message": "Custom validation failed for node",
                        "details": f"{name} - Invalid image file: {inputs[name]}",
                        "extra_info": {"input_name": name},
                    }
                )
        result = (False, errors, node_id) if errors or valid is not True else (True, [], node_id)
        validated[node_id] = result
        return result

    def _check_link(self, prompt: dict, name: str, val: list, input_type: Any, info: list, errors: list, validated: dict) -> bool:
        """A ``[node_id, slot]`` input; False when the linked node is invalid (its error is filed there)."""
        if len(val) != 2:
            errors.append(
                {
                    "type": "bad_linked_input",
                    "message": "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                    "details": f"{name}",
                    "extra_info": {"input_name": name, "input_config": info, "received_value": val},
                }
            )
            return True
        linked_id = val[0]
        linked_class = prompt[linked_id]["class_type"]  # KeyError for a missing node, as in ComfyUI
        received_type = self.registry.return_types(linked_class)[val[1]]
        if not _type_matches(received_type, input_type):
            errors.append(
                {
                    "type": "return_type_mismatch",
                    "message": "Return type mismatch between linked nodes",
                    "details": f"{name}, received_type({received_type}) mismatch input_type({input_type})",
                    "extra_info": {
                        "input_name": name,
                        "input_config": info,
                        "received_type": received_type,
                        "linked_node": val,
                    },
                }
            )
            return True
        try:
            ok, _, _ = self.validate_inputs(prompt, linked_id, validated)
            return ok is not False
        except Exception as ex:  # noqa: BLE001 - prompt_error_link_to_missing_node.json
            reason = _exception_reason("exception_during_inner_validation", "Exception when validating inner node", ex)
            reason["extra_info"] = {
                "input_name": name,
                "input_config": info,
                **reason["extra_info"],
                "linked_node": val,
            }
            validated[linked_id] = (False, [reason], linked_id)
            return False

    def _check_widget(self, inputs: dict, name: str, val: Any, input_type: Any, extra: dict, info: list, custom: list) -> dict | None:
        """A literal value: conversion, min/max, combo list (prompt_error_value_*.json, *_bad_*.json)."""
        try:
            if isinstance(val, dict) and "__value__" in val:
                val = val["__value__"]
                inputs[name] = val
            val = _convert(input_type, val)
            inputs[name] = val
        except Exception as ex:  # noqa: BLE001 - prompt_error_bad_value_type.json
            return {
                "type": "invalid_input_type",
                "message": f"Failed to convert an input value to a {input_type} value",
                "details": f"{name}, {val}, {ex}",
                "extra_info": {"input_name": name, "input_config": info, "received_value": val, "exception_message": str(ex)},
            }
        if name in custom:
            return None
        if "min" in extra and val < extra["min"]:
            return _range_error("value_smaller_than_min", f"Value {val} smaller than min of {extra['min']}", name, info, val)
        if "max" in extra and val > extra["max"]:
            return _range_error("value_bigger_than_max", f"Value {val} bigger than max of {extra['max']}", name, info, val)
        if isinstance(input_type, list) and val not in input_type:
            # ComfyUI does not echo lists longer than 20 (prompt_error_bad_combo_value.json).
            if len(input_type) > 20:
                list_info, config = f"(list of length {len(input_type)})", None
            else:
                list_info, config = str(input_type), info
            return {
                "type": "value_not_in_list",
                "message": "Value not in list",
                "details": f"{name}: '{val}' not in {list_info}",
                "extra_info": {"input_name": name, "input_config": config, "received_value": val},
            }
        return None


def _prompt_error(kind: str, message: str, details: str = "") -> dict:
    return {"type": kind, "message": message, "details": details, "extra_info": {}}


def _range_error(kind: str, message: str, name: str, info: list, val: Any) -> dict:
    return {
        "type": kind,
        "message": message,
        "details": f"{name}",
        "extra_info": {"input_name": name, "input_config": info, "received_value": val},
    }


def _exception_reason(kind: str, message: str, ex: BaseException) -> dict:
    return {
        "type": kind,
        "message": message,
        "details": str(ex),
        "extra_info": {
            "exception_message": str(ex),
            "exception_type": _full_type_name(type(ex)),
            "traceback": traceback.format_tb(ex.__traceback__),
        },
    }


def _full_type_name(klass: type) -> str:
    module = klass.__module__
    return klass.__qualname__ if module == "builtins" else f"{module}.{klass.__qualname__}"


# --------------------------------------------------------------------------- execution order


class ExecutionOrder:
    """comfy_execution/graph.py's TopologicalSort + ExecutionList.ux_friendly_pick_node.

    Reproduces the recorded node order (4,5,7,6,3,8,9 in ws_messages_success.jsonl;
    1,2,3,11,4,6,5,7,8,9,10 in ws_messages_img2img.jsonl). Cached nodes are not scheduled,
    except the output nodes, which are always added and then answered from the cache.
    """

    def __init__(self, prompt: dict, registry: NodeRegistry, is_cached: Callable[[str], bool]) -> None:
        self.prompt = prompt
        self.registry = registry
        self.is_cached = is_cached
        self.pending: dict[str, bool] = {}
        self.block_count: dict[str, int] = {}
        self.blocking: dict[str, dict[str, dict]] = {}

    def add_node(self, node_id: str) -> None:
        stack = [node_id]
        links: list[tuple[str, int, str]] = []
        while stack:
            unique_id = stack.pop()
            if unique_id in self.pending:
                continue
            self.pending[unique_id] = True
            self.block_count[unique_id] = 0
            self.blocking[unique_id] = {}
            for value in self.prompt[unique_id]["inputs"].values():
                if isinstance(value, list) and len(value) == 2:
                    from_id, socket_index = value
                    if not self.is_cached(from_id):
                        stack.append(from_id)
                    links.append((from_id, socket_index, unique_id))
        for from_id, socket_index, to_id in links:
            if not self.is_cached(from_id):
                if to_id not in self.blocking[from_id]:
                    self.blocking[from_id][to_id] = {}
                    self.block_count[to_id] += 1
                self.blocking[from_id][to_id][socket_index] = True

    def _is_output(self, node_id: str) -> bool:
        return self.registry.is_output(self.prompt[node_id]["class_type"])

    def next_node(self) -> str | None:
        """The node ComfyUI would run next: outputs first, then what feeds an output soonest."""
        ready = [n for n in self.pending if self.block_count[n] == 0]
        if not ready:
            return None
        for node_id in ready:
            if self._is_output(node_id):
                return node_id
        for node_id in ready:
            if any(self._is_output(b) for b in self.blocking[node_id]):
                return node_id
        for node_id in ready:
            for blocked in self.blocking[node_id]:
                if any(self._is_output(b) for b in self.blocking.get(blocked, {})):
                    return node_id
        return ready[0]

    def complete(self, node_id: str) -> None:
        del self.pending[node_id]
        for blocked in self.blocking[node_id]:
            self.block_count[blocked] -= 1
        del self.blocking[node_id]


# --------------------------------------------------------------------------- simulated values


@dataclass
class Latent:
    """A LATENT. ``source``/``noise_mask`` ride along from an encoded image so that a masked
    (inpainting) render can keep the source outside the mask (standin_media.render_png)."""

    width: int
    height: int
    batch: int
    channels: int = 4
    seed: int = 0
    source: Any = None  # PIL RGB image at width x height, from VAEEncode*/LoadImage
    noise_mask: Any = None  # PIL L image (255 = repaint), from VAEEncodeForInpaint / SetLatentNoiseMask

    def __str__(self) -> str:
        # Shaped like the tensor repr ComfyUI puts in execution_error.current_inputs.
        mask = ", 'noise_mask': <stand-in tensor>" if self.noise_mask is not None else ""
        return f"{{'samples': <stand-in tensor [{self.batch}, {self.channels}, {self.height // 8}, {self.width // 8}]>{mask}}}"


@dataclass
class Image:
    """An IMAGE. Without ``source`` it is generated (seeded noise); with ``source`` alone it is that
    file (LoadImage); with both, a masked render: ``source`` kept where ``repaint`` is 0."""

    width: int
    height: int
    batch: int
    seed: int = 0
    source: Any = None  # PIL RGB image at width x height
    repaint: Any = None  # PIL L image: where a masked render painted

    def __str__(self) -> str:
        return f"<stand-in IMAGE tensor [{self.batch}, {self.height}, {self.width}, 3]>"


@dataclass
class Mask:
    """A MASK: ``pixels`` is a PIL L image (255 = 1.0 = repaint), None for ComfyUI's 64x64 zeros."""

    width: int
    height: int
    batch: int = 1
    pixels: Any = None

    def __str__(self) -> str:
        return f"<stand-in MASK tensor [{self.batch}, {self.height}, {self.width}]>"


@dataclass
class Opaque:
    """MODEL, CLIP, VAE, CONDITIONING, SIGMAS...: things whose content does not matter here."""

    kind: str
    detail: Any = None

    def __str__(self) -> str:
        return f"<stand-in {self.kind} object>"


class NodeFailure(Exception):
    """A node raised at execution time (execution_error)."""

    def __init__(self, message: str, exception_type: str) -> None:
        super().__init__(message)
        self.exception_type = exception_type


class Interrupted(Exception):
    """ComfyUI's InterruptProcessingException (execution_interrupted)."""


def _round8(value: float) -> int:
    return max(8, int(round(value / 8)) * 8)


# --------------------------------------------------------------------------- queue


@dataclass
class QueueItem:
    """``[number, prompt_id, prompt, extra_data, outputs_to_execute]`` (queue_busy.json)."""

    number: float
    prompt_id: str
    prompt: dict
    extra_data: dict
    outputs: list[str]

    def as_list(self) -> list:
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs]

    def __lt__(self, other: QueueItem) -> bool:
        return (self.number, self.prompt_id) < (other.number, other.prompt_id)


class PromptQueue:
    """execution.PromptQueue: a heap of pending items, the running one, history, worker flags.

    Every change calls ``on_change`` (ComfyUI's ``queue_updated``: a broadcast ``status``).
    """

    max_history = 10000

    def __init__(self, on_change: Callable[[], None]) -> None:
        self.on_change = on_change
        self.pending: list[QueueItem] = []
        self.running: dict[int, QueueItem] = {}
        self.history: dict[str, dict] = {}
        self.flags: dict[str, Any] = {}
        self._next_task = 0
        self._wakeup = asyncio.Event()

    def put(self, item: QueueItem) -> None:
        heapq.heappush(self.pending, item)
        self.on_change()
        self._wakeup.set()

    async def get(self) -> tuple[QueueItem, int] | None:
        """The next item, or None when woken only by flags (set_flag notifies the worker too)."""
        while not self.pending and not self.flags:
            self._wakeup.clear()
            await self._wakeup.wait()
        if not self.pending:
            return None
        item = heapq.heappop(self.pending)
        task_id = self._next_task
        self._next_task += 1
        self.running[task_id] = item
        self.on_change()
        return item, task_id

    def task_done(self, task_id: int, outputs: dict, meta: dict, status: dict) -> None:
        """Move the finished item into history (history_done.json shape), then broadcast status."""
        item = self.running.pop(task_id)
        if len(self.history) > self.max_history:
            self.history.pop(next(iter(self.history)))
        self.history[item.prompt_id] = {"prompt": item.as_list(), "outputs": outputs, "status": status, "meta": meta}
        self.on_change()

    def remaining(self) -> int:
        return len(self.pending) + len(self.running)

    def running_items(self) -> list[QueueItem]:
        return list(self.running.values())

    def delete(self, prompt_id: str) -> bool:
        """Remove one pending item (queue_after_delete.json); it never reaches history."""
        for index, item in enumerate(self.pending):
            if item.prompt_id == prompt_id:
                self.pending.pop(index)
                heapq.heapify(self.pending)
                self.on_change()
                return True
        return False

    def wipe(self) -> None:
        """Clear pending only; the running job continues (queue_after_clear.json)."""
        self.pending = []
        self.on_change()

    def get_history(self, prompt_id: str | None = None, max_items: int | None = None, offset: int = -1) -> dict:
        """history_paging.json: max_items = the newest N; offset counts from the oldest."""
        if prompt_id is not None:
            entry = self.history.get(prompt_id)
            return {prompt_id: copy.deepcopy(entry)} if entry is not None else {}
        if offset < 0 and max_items is not None:
            offset = len(self.history) - max_items
        out: dict[str, dict] = {}
        for index, key in enumerate(self.history):
            if index >= offset:
                out[key] = self.history[key]
                if max_items is not None and len(out) >= max_items:
                    break
        return out

    def set_flag(self, name: str, value: Any) -> None:
        self.flags[name] = value
        self._wakeup.set()

    def take_flags(self) -> dict[str, Any]:
        flags, self.flags = self.flags, {}
        return flags


# --------------------------------------------------------------------------- websockets


@dataclass
class _Outgoing:
    kind: str  # "json", "bytes", or "close" (the ws_close_after fault)
    payload: Any
    sid: str | None


class SocketHub:
    """PromptServer's websocket side: ``sockets`` by client id, send_sync through one ordered outbox.

    ``client_id`` is the running prompt's client id, kept after the prompt ends as ComfyUI does;
    ``last_node_id`` is what a reconnecting client is told (ws_reconnect_during_run.jsonl).
    ``dropping``/``close_after`` are the lost-message faults of the running prompt.
    """

    def __init__(self) -> None:
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.metadata: dict[str, dict] = {}
        self.all_open: set[web.WebSocketResponse] = set()
        self.client_id: str | None = None
        self.last_node_id: str | None = None
        self.dropping: set[str] = set()
        self.close_after: str | None = None
        self._outbox: asyncio.Queue[_Outgoing] = asyncio.Queue()

    def send_sync(self, event: str, data: dict, sid: str | None) -> None:
        """Queue a JSON message for one client, or for every socket when ``sid`` is None."""
        self._queue(event, _Outgoing("json", {"type": event, "data": data}, sid))

    def send_binary(self, payload: bytes, sid: str | None) -> None:
        self._queue("binary", _Outgoing("bytes", payload, sid))

    def _queue(self, kind: str, message: _Outgoing) -> None:
        """A dropped kind is never sent; the ``close_after`` kind is followed by closing every socket."""
        if kind in self.dropping:
            return
        self._outbox.put_nowait(message)
        if kind == self.close_after:
            self.close_after = None
            self._outbox.put_nowait(_Outgoing("close", None, None))

    def begin_prompt(self, dropping: set[str], close_after: str | None) -> None:
        self.dropping, self.close_after = dropping, close_after

    def end_prompt(self) -> None:
        self.dropping, self.close_after = set(), None

    def supports_preview_metadata(self, sid: str | None) -> bool:
        return bool(sid is not None and self.metadata.get(sid, {}).get("feature_flags", {}).get("supports_preview_metadata"))

    async def publish_loop(self) -> None:
        while True:
            message = await self._outbox.get()
            if message.kind == "close":
                try:
                    await self.close_all()
                finally:
                    self._outbox.task_done()
                continue
            if message.sid is None:
                targets = list(self.sockets.values())
            else:
                target = self.sockets.get(message.sid)
                targets = [target] if target is not None else []
            try:
                for ws in targets:
                    await self._send_one(ws, message)
            finally:
                self._outbox.task_done()

    @staticmethod
    async def _send_one(ws: web.WebSocketResponse, message: _Outgoing) -> None:
        try:
            if message.kind == "json":
                await ws.send_json(message.payload)
            else:
                await ws.send_bytes(message.payload)
        except (ConnectionError, RuntimeError):
            pass  # a closing socket; ComfyUI logs and carries on

    async def wait_drained(self) -> None:
        """Until every queued message has been written to its sockets."""
        await self._outbox.join()

    async def close_all(self) -> int:
        """Close every open websocket (the client sees the connection end)."""
        sockets = list(self.all_open)
        for ws in sockets:
            await ws.close(code=aiohttp.WSCloseCode.GOING_AWAY, message=b"stand-in drop")
        return len(sockets)


def preview_frame(image: bytes, image_type: int = PNG_IMAGE_TYPE) -> bytes:
    """Event 1: ``[uint32 BE 1][uint32 BE image_type][image]`` (ws_messages_save_image_websocket.jsonl,
    ws_messages_preview_latent2rgb.jsonl)."""
    return struct.pack(">II", PREVIEW_IMAGE, image_type) + image


def preview_frame_with_metadata(png: bytes, metadata: dict) -> bytes:
    """Event 4: ``[uint32 BE 4][uint32 BE len][metadata JSON][image]`` (…_metadata.jsonl)."""
    blob = json.dumps(metadata).encode("utf-8")
    return struct.pack(">II", PREVIEW_IMAGE_WITH_METADATA, len(blob)) + blob + png


# --------------------------------------------------------------------------- executor


@dataclass
class CachedResult:
    outputs: tuple
    ui: dict | None


class Executor:
    """execution.PromptExecutor: runs one queue item and emits the recorded message sequence.

    Messages (ws_messages_success.jsonl): execution_start, execution_cached, then per node
    progress_state(running) executing [progress_state+progress per step] progress_state(finished),
    output nodes add ``executed``; execution_success or execution_error / execution_interrupted.
    """

    def __init__(self, standin: ComfyStandIn) -> None:
        self.standin = standin
        self.hub = standin.hub
        self.cache: dict[str, CachedResult] = {}
        self.interrupt_event = asyncio.Event()
        self.models_loaded = False
        self.vram_in_use = 0  # bytes the loaded models hold (model_vram_bytes once loaded)
        # per-run state
        self.prompt_id = ""
        self.prompt: dict = {}
        self.status_messages: list[list] = []
        self.success = False
        self.outputs_ui: dict[str, dict] = {}
        self.meta: dict[str, dict] = {}
        self.progress: dict[str, dict] = {}
        self.sigs: dict[str, str] = {}
        self.executed: list[str] = []
        self.inject_failure = False
        self.extra_pnginfo: dict = {}

    # ---- cache (CacheKeySetInputSignature: the key is the node's inputs, recursively)

    def signatures(self, prompt: dict, is_changed: dict[str, str] | None = None) -> dict[str, str]:
        """``is_changed``: IS_CHANGED results by node id (LoadImage's file hash), part of the key as in
        comfy_execution/caching.py, so a file overwritten under the same name runs the node again."""
        sigs: dict[str, str] = {}
        changed = is_changed or {}

        def sig(node_id: str) -> str:
            if node_id not in sigs:
                node = prompt[node_id]
                parts = []
                for name in sorted(node["inputs"]):
                    value = node["inputs"][name]
                    if isinstance(value, list) and len(value) == 2 and value[0] in prompt:
                        parts.append([name, "link", sig(value[0]), value[1]])
                    else:
                        parts.append([name, "value", value])
                if node_id in changed:
                    parts.append(["is_changed", "value", changed[node_id]])
                sigs[node_id] = json.dumps([node["class_type"], parts], sort_keys=True, default=str)
            return sigs[node_id]

        for node_id in prompt:
            sig(node_id)
        return sigs

    def reset(self) -> None:
        """POST /free with free_memory drops the node cache (ws_messages_after_free_run.jsonl)."""
        self.cache.clear()

    # ---- messages

    def add_message(self, event: str, data: dict, broadcast: bool) -> None:
        """execution.add_message: stamp, keep for history, send to the prompt's client (or all if broadcast)."""
        data = {**data, "timestamp": now_ms()}
        self.status_messages.append([event, data])
        if self.hub.client_id is not None or broadcast:
            self.hub.send_sync(event, data, self.hub.client_id)

    def _send_progress_state(self) -> None:
        nodes = {
            node_id: {
                "value": state["value"],
                "max": state["max"],
                "state": state["state"],
                "node_id": node_id,
                "prompt_id": self.prompt_id,
                "display_node_id": node_id,
                "parent_node_id": None,
                "real_node_id": node_id,
            }
            for node_id, state in self.progress.items()
        }
        self.hub.send_sync("progress_state", {"prompt_id": self.prompt_id, "nodes": nodes}, self.hub.client_id)

    def start_progress(self, node_id: str) -> None:
        self.progress[node_id] = {"value": 0.0, "max": 1.0, "state": "running"}
        self._send_progress_state()

    def finish_progress(self, node_id: str) -> None:
        state = self.progress.setdefault(node_id, {"value": 0, "max": 1, "state": "pending"})
        state["state"] = "finished"
        state["value"] = state["max"]
        self._send_progress_state()

    def report_step(self, node_id: str, value: int, total: int, preview: tuple[bytes, int] | None = None) -> None:
        """One ProgressBar update: progress_state, [event-4 frame], progress, [event-1 frame].

        ``preview`` is (image bytes, image type 1=JPEG/2=PNG). The order is main.hijack_progress's
        (progress, then the event-1 frame) and comfy_execution/progress.py's (progress_state, then
        the event-4 frame to a socket that asked for metadata), as recorded in
        ws_messages_preview_latent2rgb*.jsonl and ws_messages_save_image_websocket*.jsonl.
        """
        self.progress[node_id] = {"value": value, "max": total, "state": "running"}
        self._send_progress_state()
        client = self.hub.client_id
        metadata_client = self.hub.supports_preview_metadata(client)
        if preview is not None and metadata_client:
            metadata = {
                "node_id": node_id,
                "prompt_id": self.prompt_id,
                "display_node_id": node_id,
                "parent_node_id": None,
                "real_node_id": node_id,
                "image_type": IMAGE_MIME[preview[1]],
            }
            self.hub.send_binary(preview_frame_with_metadata(preview[0], metadata), client)
        self.hub.send_sync("progress", {"value": value, "max": total, "prompt_id": self.prompt_id, "node": node_id}, client)
        if preview is not None and not metadata_client:
            self.hub.send_binary(preview_frame(preview[0], preview[1]), client)

    def png_text(self) -> dict[str, str]:
        """SaveImage's PNG text chunks: ``prompt`` plus every ``extra_pnginfo`` entry (e.g. ``workflow``)."""
        text = {"prompt": json.dumps(self.prompt)}
        text.update({key: json.dumps(value) for key, value in self.extra_pnginfo.items()})
        return text

    # ---- time

    async def sleep(self, seconds: float) -> None:
        """Interruptible work: a pending interrupt ends it at once (ComfyUI checks per step)."""
        if self.interrupt_event.is_set():
            raise Interrupted()
        if seconds > 0:
            try:
                await asyncio.wait_for(self.interrupt_event.wait(), seconds)
            except TimeoutError:
                return
            raise Interrupted()

    async def busy(self, seconds: float) -> None:
        """Uninterruptible work (a model load, a VAE decode): an interrupt waits for the next check."""
        await self.standin._pause(seconds)

    async def node_work(self) -> None:
        """A non-sampler node's own time (``node_seconds``): node code does not check for interrupts."""
        await self.busy(self.standin.settings.node_seconds)

    async def hang(self, class_type: str) -> None:
        """``hang_class_type``: the node never returns (a GPU hang) until the setting changes."""
        while self.standin.settings.hang_class_type == class_type and not self.standin.stopping:
            await self.standin._pause(0.02)

    async def load_models(self) -> None:
        """comfy.model_management.load_models_gpu before sampling: memory is taken as loading starts."""
        self.models_loaded = True
        await self.standin.set_vram_in_use(self.standin.settings.model_vram_bytes)
        await self.busy(self.standin.settings.load_seconds)

    async def unload_models(self) -> None:
        """model_management.unload_all_models (the worker applying /free): use falls in steps over
        ``unload_seconds`` as models are let go, one after another."""
        seconds, held = self.standin.settings.unload_seconds, self.vram_in_use
        steps = 5 if seconds > 0 and held > 0 else 1
        for step in range(1, steps + 1):
            await self.busy(seconds / steps if steps > 1 else 0)
            await self.standin.set_vram_in_use(held - held * step // steps)
        self.models_loaded = False

    def _message_faults(self) -> None:
        """Arm drop_messages / ws_close_after for the prompt that starts now."""
        settings = self.standin.settings
        dropping: set[str] = set()
        if settings.drop_messages_prompts > 0 and settings.drop_messages:
            settings.drop_messages_prompts -= 1
            dropping = set(settings.drop_messages)
        close_after = settings.ws_close_after or None
        settings.ws_close_after = ""
        self.hub.begin_prompt(dropping, close_after)

    # ---- one prompt

    async def execute(self, item: QueueItem) -> None:
        settings = self.standin.settings
        self.prompt_id, self.prompt = item.prompt_id, item.prompt
        self.status_messages, self.success = [], False
        self.outputs_ui, self.meta, self.progress = {}, {}, {}
        self.interrupt_event.clear()  # nodes.interrupt_processing(False): an idle interrupt is forgotten
        self.hub.client_id = item.extra_data.get("client_id")
        self.extra_pnginfo = item.extra_data.get("extra_pnginfo") or {}
        self.inject_failure = settings.fail_next_prompts > 0
        if self.inject_failure:
            settings.fail_next_prompts -= 1
        self._message_faults()

        self.add_message("execution_start", {"prompt_id": self.prompt_id}, broadcast=False)
        is_changed = await asyncio.to_thread(self.standin.is_changed, self.prompt)
        self.sigs = sigs = self.signatures(self.prompt, is_changed)
        self.executed = []
        in_use = set(sigs.values())
        self.cache = {key: result for key, result in self.cache.items() if key in in_use}  # clean_unused()
        cached = [node_id for node_id in self.prompt if sigs[node_id] in self.cache]
        self.add_message("execution_cached", {"nodes": cached, "prompt_id": self.prompt_id}, broadcast=False)

        registry = self.standin.registry()
        order = ExecutionOrder(self.prompt, registry, lambda n: sigs.get(n) in self.cache)
        for output_id in item.outputs:
            order.add_node(output_id)
        results: dict[str, tuple] = {}
        current: str | None = None
        try:
            while (current := order.next_node()) is not None:
                results[current] = await self.execute_node(current, sigs, results, registry)
                order.complete(current)
        except Interrupted:
            self.add_message(
                "execution_interrupted",
                {
                    "prompt_id": self.prompt_id,
                    "node_id": current,
                    "node_type": self.prompt[current]["class_type"],
                    "executed": list(self.executed),
                },
                broadcast=True,
            )
        except NodeFailure as failure:
            self.add_message("execution_error", self._error_message(current, failure, results), broadcast=False)
        else:
            self.success = True
            self.add_message("execution_success", {"prompt_id": self.prompt_id}, broadcast=False)
        finally:
            self.hub.last_node_id = None

    def _error_message(self, node_id: str, failure: NodeFailure, results: dict) -> dict:
        """The execution_error payload of ws_messages_error.jsonl."""
        return {
            "prompt_id": self.prompt_id,
            "node_id": node_id,
            "node_type": self.prompt[node_id]["class_type"],
            "executed": list(self.executed),
            "exception_message": str(failure),
            "exception_type": failure.exception_type,
            "traceback": [f'  File "{__file__}", in execute_node\n    (stand-in failure for {self.prompt[node_id]["class_type"]})\n'],
            "current_inputs": self._format_inputs(node_id, results),
            "current_outputs": list(self.prompt),
        }

    def _format_inputs(self, node_id: str, results: dict) -> dict:
        formatted = {}
        for name, value in self.prompt[node_id]["inputs"].items():
            if isinstance(value, list) and len(value) == 2:
                linked = self._linked_value(value, results)
                formatted[name] = [str(linked)]
            elif value is None or isinstance(value, (int, float, bool, str)):
                formatted[name] = [value]
            else:
                formatted[name] = [str(value)]
        return formatted

    def _linked_value(self, link: list, results: dict) -> Any:
        """A linked input: this run's result, else the cached one."""
        from_id, index = link
        outputs = results.get(from_id)
        if outputs is None:
            cached = self.cache.get(self.sigs.get(from_id, ""))
            outputs = cached.outputs if cached else ()
        return outputs[index] if isinstance(index, int) and index < len(outputs) else None

    async def execute_node(self, node_id: str, sigs: dict, results: dict, registry: NodeRegistry) -> tuple:
        node = self.prompt[node_id]
        class_type = node["class_type"]
        is_output = registry.is_output(class_type)
        fail_here = self.inject_failure and (class_type == self.standin.settings.fail_class_type or is_output)
        cached = self.cache.get(sigs[node_id])
        if cached is not None and not fail_here:
            return self._from_cache(node_id, cached)
        self.start_progress(node_id)
        if self.hub.client_id is not None:
            self.hub.last_node_id = node_id
            self.hub.send_sync("executing", {"node": node_id, "display_node": node_id, "prompt_id": self.prompt_id}, self.hub.client_id)
        await self.sleep(0)
        if class_type == self.standin.settings.hang_class_type:
            await self.hang(class_type)
        if fail_here:
            self.inject_failure = False
            raise NodeFailure(self.standin.settings.fail_message, self.standin.settings.fail_exception_type)
        inputs = {
            name: self._linked_value(value, results) if isinstance(value, list) and len(value) == 2 else value
            for name, value in node["inputs"].items()
        }
        try:
            outputs, ui = await NODE_BEHAVIOURS.get(class_type, _run_passthrough)(self, node_id, inputs)
        except (Interrupted, NodeFailure):
            raise
        except Exception as ex:  # noqa: BLE001 - any node exception is an execution_error in ComfyUI
            raise NodeFailure(f"{ex}\n", _full_type_name(type(ex))) from ex
        self.cache[sigs[node_id]] = CachedResult(outputs, ui)
        if ui is not None:
            self._record_ui(node_id, ui)
        self.finish_progress(node_id)
        self.executed.append(node_id)
        return outputs

    def _from_cache(self, node_id: str, cached: CachedResult) -> tuple:
        """A cached output node: ``executed`` from the cache, progress finished, no ``executing``
        (ws_messages_cached.jsonl)."""
        if self.hub.client_id is not None:
            output = cached.ui
            self.hub.send_sync(
                "executed",
                {"node": node_id, "display_node": node_id, "output": output, "prompt_id": self.prompt_id},
                self.hub.client_id,
            )
        if cached.ui is not None:
            self.outputs_ui[node_id] = cached.ui
            self.meta[node_id] = _meta(node_id)
        self.finish_progress(node_id)
        return cached.outputs

    def _record_ui(self, node_id: str, ui: dict) -> None:
        self.outputs_ui[node_id] = ui
        self.meta[node_id] = _meta(node_id)
        if self.hub.client_id is not None:
            self.hub.send_sync(
                "executed",
                {"node": node_id, "display_node": node_id, "output": ui, "prompt_id": self.prompt_id},
                self.hub.client_id,
            )


def _meta(node_id: str) -> dict:
    """history ``meta`` entry (history_done.json)."""
    return {"node_id": node_id, "display_node": node_id, "parent_node": None, "real_node_id": node_id}


# --------------------------------------------------------------------------- node behaviours
# Each returns (outputs tuple, ui dict or None). Time is spent through executor.sleep.


async def _run_passthrough(ex: Executor, node_id: str, inputs: dict) -> tuple[tuple, dict | None]:
    await ex.node_work()
    return (), None


async def _run_checkpoint_loader(ex: Executor, node_id: str, inputs: dict) -> tuple[tuple, dict | None]:
    await ex.node_work()
    ckpt = inputs.get("ckpt_name")
    return (Opaque("MODEL", ckpt), Opaque("CLIP", ckpt), Opaque("VAE", {"channels": 4})), None


async def _run_text_encode(ex: Executor, node_id: str, inputs: dict) -> tuple[tuple, dict | None]:
    await ex.node_work()
    return (Opaque("CONDITIONING"),), None


async def _run_lora_loader(ex: Executor, node_id: str, inputs: dict) -> tuple[tuple, dict | None]:
    await ex.node_work()
    return (inputs.get("model"), inputs.get("clip")), None


def _empty_latent(channels: int) -> Callable:
    async def run(ex: Executor, node_id: str, inputs: dict) -> tuple[tuple, dict | None]:
        await ex.node_work()
        return (Latent(inputs["width"], inputs["height"], inputs["batch_size"], channels),), None

    return run


async def _sample(ex: Executor, node_id: str, latent: Latent, steps: int, seed: int) -> tuple[tuple, dict | None]:
    """One ``progress`` per step, value 1..steps (ws_messages_success_10_steps.jsonl); with a
    ``preview_method`` also one JPEG preview frame per step (ws_messages_preview_latent2rgb.jsonl).
    The model load (``load_seconds``) cannot be interrupted; steps can."""
    settings = ex.standin.settings
    if not ex.models_loaded:
        await ex.load_models()
    await ex.sleep(settings.render_seconds)
    for step in range(1, steps + 1):
        await ex.sleep(settings.step_seconds)
        preview = None
        if settings.preview_method != "none":
            jpeg = await asyncio.to_thread(media.latent_preview_jpeg, latent.width, latent.height, seed + step, settings.preview_size)
            preview = (jpeg, JPEG_IMAGE_TYPE)
        ex.report_step(node_id, step, steps, preview)
    return (dataclasses.replace(latent, seed=seed),), None


async def _run_ksampler(ex: Executor, node_id: str, inputs: dict) -> tuple[tuple, dict | None]:
    return await _sample(ex, node_id, inputs["latent_image"], int(inputs["steps"]), int(inputs["seed"]))


async def _run_ksampler_advanced(ex: Executor, node_id: str, inputs: dict) -> tuple[tuple, dict | None]:
    steps = max(1, min(int(inputs["end_at_step"]), int(inputs["steps"])) - int(inputs["start_at_step"]))
    return await _sample(ex, node_id, inputs["latent_image"], steps, int(inputs["noise_seed"]))


async def _run_sampler_custom(ex: Executor, node_id: str, inputs: dict) -> tuple[tuple, dict | None]:
    sigmas = inputs.get("sigmas")
    steps = sigmas.detail if isinstance(sigmas, Opaque) and isinstance(sigmas.detail, int) else 1
    out, ui = await _sample(ex, node_id, inputs["latent_image"], steps, int(inputs["noise_seed"]))
    return (out[0], out[0]), ui


async def _run_turbo_scheduler(ex: Executor, node_id: str, inputs: dict) -> tuple[tuple, dict | None]:
    await ex.node_work()
    return (Opaque("SIGMAS", int(inputs["steps"])),), None


async def _run_vae_decode(ex: Executor, node_id: str, inputs: dict) -> tuple[tuple, dict | None]:
    """The image is the latent's size. A 16-channel latent into a 4-channel VAE fails as in
    ws_messages_error.jsonl; the decode itself (``decode_seconds``) cannot be interrupted."""
    await ex.node_work()
    latent: Latent = inputs["samples"]
    vae_channels = 4
    if latent.channels != vae_channels:
        raise NodeFailure(
            f"Given groups=1, weight of size [4, 4, 1, 1], expected input[{latent.batch}, {latent.channels}, "
            f"{latent.height // 8}, {latent.width // 8}] to have 4 channels, but got {latent.channels} channels instead\n",
            "RuntimeError",
        )
    await ex.busy(ex.standin.settings.decode_seconds)
    image = Image(latent.width, latent.height, latent.batch, latent.seed)
    if latent.source is not None and latent.noise_mask is not None:
        size = (latent.width, latent.height)
        image.source, image.repaint = await asyncio.to_thread(
            lambda: (media.resize(latent.source, size), media.resize(latent.noise_mask, size))
        )
    return (image,), None


async def _run_vae_encode(ex: Executor, node_id: str, inputs: dict) -> tuple[tuple, dict | None]:
    """comfy.sd.VAE.encode: the pixels are cropped (centred) to multiples of 8 first."""
    await ex.node_work()
    image: Image = inputs["pixels"]
    source = await asyncio.to_thread(media.crop_to_latent, image.source) if image.source is not None else None
    return (Latent(image.width // 8 * 8, image.height // 8 * 8, image.batch, 4, image.seed, source=source),), None


async def _run_vae_encode_for_inpaint(ex: Executor, node_id: str, inputs: dict) -> tuple[tuple, dict | None]:
    """nodes.VAEEncodeForInpaint: cropped like VAEEncode, plus a ``noise_mask`` (the mask at the image's
    size, rounded, grown by ``grow_mask_by``)."""
    await ex.node_work()
    image: Image = inputs["pixels"]
    mask: Mask = inputs["mask"]
    grow = int(inputs["grow_mask_by"])

    def work() -> tuple[Any, Any]:
        source = media.crop_to_latent(image.source) if image.source is not None else None
        return source, media.inpaint_mask(mask.pixels, (image.width, image.height), grow)

    source, noise_mask = await asyncio.to_thread(work)
    latent = Latent(image.width // 8 * 8, image.height // 8 * 8, image.batch, 4, image.seed, source, noise_mask)
    return (latent,), None


async def _run_set_latent_noise_mask(ex: Executor, node_id: str, inputs: dict) -> tuple[tuple, dict | None]:
    """nodes.SetLatentNoiseMask: the latent with the mask as its ``noise_mask``, nothing else changed."""
    await ex.node_work()
    latent: Latent = inputs["samples"]
    mask: Mask = inputs["mask"]
    return (dataclasses.replace(latent, noise_mask=mask.pixels if mask.pixels is not None else media.empty_mask()),), None


async def _run_repeat_latent_batch(ex: Executor, node_id: str, inputs: dict) -> tuple[tuple, dict | None]:
    """nodes.RepeatLatentBatch: the batch repeated ``amount`` times; a one-image noise_mask stays as it is
    (the sampler broadcasts it over the batch)."""
    await ex.node_work()
    latent: Latent = inputs["samples"]
    return (dataclasses.replace(latent, batch=latent.batch * int(inputs["amount"])),), None


def _scaled(width: int, height: int, new_w: int, new_h: int) -> tuple[int, int]:
    """ImageScale/LatentUpscale: a 0 side keeps the aspect ratio."""
    if new_w == 0 and new_h == 0:
        return width, height
    if new_w == 0:
        new_w = max(1, round(width * new_h / height))
    if new_h == 0:
        new_h = max(1, round(height * new_w / width))
    return new_w, new_h


async def _resized_image(image: Image, width: int, height: int) -> Image:
    """The image at a new size; carried pixels (source, repaint mask) are resized with it."""
    size = (width, height)
    source, repaint = await asyncio.to_thread(lambda: (media.resize(image.source, size), media.resize(image.repaint, size)))
    return dataclasses.replace(image, width=width, height=height, source=source, repaint=repaint)


async def _resized_latent(latent: Latent, width: int, height: int) -> Latent:
    size = (width, height)
    source, mask = await asyncio.to_thread(lambda: (media.resize(latent.source, size), media.resize(latent.noise_mask, size)))
    return dataclasses.replace(latent, width=width, height=height, source=source, noise_mask=mask)


async def _run_image_scale(ex: Executor, node_id: str, inputs: dict) -> tuple[tuple, dict | None]:
    await ex.node_work()
    image: Image = inputs["image"]
    w, h = _scaled(image.width, image.height, int(inputs["width"]), int(inputs["height"]))
    return (await _resized_image(image, w, h),), None


async def _run_image_scale_by(ex: Executor, node_id: str, inputs: dict) -> tuple[tuple, dict | None]:
    await ex.node_work()
    image: Image = inputs["image"]
    scale = float(inputs["scale_by"])
    return (await _resized_image(image, round(image.width * scale), round(image.height * scale)),), None


async def _run_latent_upscale(ex: Executor, node_id: str, inputs: dict) -> tuple[tuple, dict | None]:
    await ex.node_work()
    latent: Latent = inputs["samples"]
    w, h = _scaled(latent.width, latent.height, int(inputs["width"]), int(inputs["height"]))
    return (await _resized_latent(latent, _round8(w), _round8(h)),), None


async def _run_latent_upscale_by(ex: Executor, node_id: str, inputs: dict) -> tuple[tuple, dict | None]:
    await ex.node_work()
    latent: Latent = inputs["samples"]
    scale = float(inputs["scale_by"])
    return (await _resized_latent(latent, _round8(latent.width * scale), _round8(latent.height * scale)),), None


def _load_image_file(path: Path) -> tuple[media.Decoded, int]:
    """The decoded file and a seed from its bytes (so different uploads render differently)."""
    decoded = media.load_image(path)
    seed = int.from_bytes(hashlib.sha256(path.read_bytes()).digest()[:4], "big")
    return decoded, seed


async def _run_load_image(ex: Executor, node_id: str, inputs: dict) -> tuple[tuple, dict | None]:
    """nodes.LoadImage: the file's size and frames, MASK = 1 - alpha (64x64 zeros without alpha).
    A file that is not an image fails with PIL.UnidentifiedImageError (ws_messages_error_loadimage.jsonl)."""
    await ex.node_work()
    decoded, seed = await asyncio.to_thread(_load_image_file, ex.standin.annotated_input_path(str(inputs["image"])))
    width, height = decoded.rgb.size
    image = Image(width, height, decoded.frames, seed, source=decoded.rgb)
    if decoded.repaint is None:
        return (image, Mask(64, 64, 1)), None
    return (image, Mask(width, height, decoded.frames, decoded.repaint)), None


async def _run_load_image_mask(ex: Executor, node_id: str, inputs: dict) -> tuple[tuple, dict | None]:
    """nodes.LoadImageMask: one channel of the file as a MASK (alpha inverted: transparent = repaint)."""
    await ex.node_work()
    path = ex.standin.annotated_input_path(str(inputs["image"]))
    pixels = await asyncio.to_thread(media.load_image_mask, path, str(inputs["channel"]))
    return (Mask(pixels.width, pixels.height, 1, pixels),), None


async def _run_save_image(ex: Executor, node_id: str, inputs: dict) -> tuple[tuple, dict | None]:
    """SaveImage: ``<prefix>_00001_.png`` counting up per file, type output (history_done.json)."""
    await ex.node_work()
    prefix = str(inputs.get("filename_prefix", "ComfyUI"))
    images = await ex.standin.save_images(inputs["images"], prefix, "output", ex.png_text())
    return (), {"images": images}


async def _run_preview_image(ex: Executor, node_id: str, inputs: dict) -> tuple[tuple, dict | None]:
    """PreviewImage: ``ComfyUI_temp_<5 letters>_00001_.png``, type temp (history_img2img.json)."""
    await ex.node_work()
    suffix = "".join(random.choice(string.ascii_lowercase) for _ in range(5))
    images = await ex.standin.save_images(inputs["images"], f"ComfyUI_temp_{suffix}", "temp", ex.png_text())
    return (), {"images": images}


async def _run_save_image_websocket(ex: Executor, node_id: str, inputs: dict) -> tuple[tuple, dict | None]:
    """SaveImageWebsocket: one progress + binary PNG frame per image, no ``executed``, empty history outputs
    (ws_messages_save_image_websocket*.jsonl)."""
    await ex.node_work()
    image: Image = inputs["images"]
    for index in range(image.batch):
        png = await asyncio.to_thread(media.render_png, image.width, image.height, image.seed + index, image.source, image.repaint, {})
        ex.report_step(node_id, index, image.batch, (png, PNG_IMAGE_TYPE))
    return (), None


NODE_BEHAVIOURS: dict[str, Callable] = {
    "CheckpointLoaderSimple": _run_checkpoint_loader,
    "CLIPTextEncode": _run_text_encode,
    "CLIPTextEncodeSDXL": _run_text_encode,
    "LoraLoader": _run_lora_loader,
    "EmptyLatentImage": _empty_latent(4),
    "EmptySD3LatentImage": _empty_latent(16),
    "KSampler": _run_ksampler,
    "KSamplerAdvanced": _run_ksampler_advanced,
    "SamplerCustom": _run_sampler_custom,
    "SDTurboScheduler": _run_turbo_scheduler,
    "VAEDecode": _run_vae_decode,
    "VAEEncode": _run_vae_encode,
    "VAEEncodeForInpaint": _run_vae_encode_for_inpaint,
    "SetLatentNoiseMask": _run_set_latent_noise_mask,
    "RepeatLatentBatch": _run_repeat_latent_batch,
    "ImageScale": _run_image_scale,
    "ImageScaleBy": _run_image_scale_by,
    "LatentUpscale": _run_latent_upscale,
    "LatentUpscaleBy": _run_latent_upscale_by,
    "LoadImage": _run_load_image,
    "LoadImageMask": _run_load_image_mask,
    "SaveImage": _run_save_image,
    "PreviewImage": _run_preview_image,
    "SaveImageWebsocket": _run_save_image_websocket,
}


def _save_pngs(folder: Path, subfolder: str, filename: str, image: Image, type_: str, text: dict[str, str]) -> list[dict]:
    """folder_paths.get_save_image_path + SaveImage.save_images (runs in a thread: disk I/O)."""
    folder.mkdir(parents=True, exist_ok=True)
    counter = 1
    for existing in os.listdir(folder):
        head, _, rest = existing.partition(filename + "_")
        if head == "" and rest.endswith("_.png"):
            digits = rest[:-5]
            if digits.isdigit():
                counter = max(counter, int(digits) + 1)
    results = []
    for index in range(image.batch):
        name = f"{filename}_{counter:05}_.png"
        png = media.render_png(image.width, image.height, image.seed + index, image.source, image.repaint, text)
        (folder / name).write_bytes(png)
        results.append({"filename": name, "subfolder": subfolder, "type": type_})
        counter += 1
    return results


# --------------------------------------------------------------------------- the server


@dataclass
class _Upload:
    """One checked ``POST /upload/*``: where it goes and its file (server.image_upload)."""

    file: Any  # the multipart part's file object (aiohttp may spool it to disk)
    filename: str
    subfolder: str
    type_: str
    upload_dir: str
    overwrite: bool

    @staticmethod
    def parse(post: Any, dirs: dict[str, str]) -> _Upload | None:
        """None for ComfyUI's 400s (no ``image`` file, no file name); raises for its 500s (an ``image``
        that is a plain field, a ``type`` that is not input/temp/output: an UnboundLocalError there)."""
        image = post.get("image")
        type_ = post.get("type")
        type_ = "input" if type_ is None else type_
        if type_ not in dirs:
            raise UnboundLocalError("cannot access local variable 'type_dir'")
        if not image:
            return None
        if not isinstance(image, web.FileField):
            raise AttributeError("'str' object has no attribute 'file'")  # noqa: TRY004 - ComfyUI's own error
        if not image.filename:
            return None
        overwrite = post.get("overwrite")
        return _Upload(
            file=image.file,
            filename=image.filename,
            subfolder=str(post.get("subfolder", "")),
            type_=type_,
            upload_dir=dirs[type_],
            overwrite=overwrite is not None and overwrite in ("true", "1"),
        )

    def store(self, save: Callable[[bytes, str], None] | None) -> dict | None:
        """Write the file (blocking): same bytes under the same name keep the name, other bytes get
        ``name (1).ext``, ``name (2).ext``... unless ``overwrite``; None (400) for a path outside the folder."""
        folder = os.path.join(self.upload_dir, os.path.normpath(self.subfolder))
        filepath = os.path.abspath(os.path.join(folder, self.filename))
        if os.path.commonpath((self.upload_dir, filepath)) != self.upload_dir:
            return None
        os.makedirs(folder, exist_ok=True)
        data: bytes = self.file.read()
        filename, duplicate = self.filename, False
        if not self.overwrite:
            stem, ext = os.path.splitext(self.filename)
            counter = 1
            while os.path.exists(filepath):
                if Path(filepath).read_bytes() == data:  # compare_image_hash (sha256 in ComfyUI)
                    duplicate = True
                    break
                filename = f"{stem} ({counter}){ext}"
                filepath = os.path.join(folder, filename)
                counter += 1
        if not duplicate:
            if save is not None:
                save(data, filepath)
            else:
                Path(filepath).write_bytes(data)
        return {"name": filename, "subfolder": self.subfolder, "type": self.type_}


# server.py's middlewares at the recorded commit (middleware/cache_middleware.py, origin_only).
_NO_CACHE_SUFFIXES = (".js", ".css", "index.json")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


@web.middleware
async def _cache_control(request: web.Request, handler: Handler) -> web.StreamResponse:
    """cache_middleware.cache_control: ``no-cache`` for scripts and styles, a day for images (an hour for a 404)."""
    response = await handler(request)
    path = request.path
    if path.endswith(_NO_CACHE_SUFFIXES):
        response.headers.setdefault("Cache-Control", "no-cache")
    elif path.lower().endswith(_IMAGE_SUFFIXES):
        if response.status == 404:
            response.headers.setdefault("Cache-Control", "public, max-age=3600")
        elif response.status in (200, 201, 202, 203, 204, 205, 206, 301, 308):
            response.headers.setdefault("Cache-Control", "public, max-age=86400")
        elif response.status in (302, 303, 307):
            response.headers.setdefault("Cache-Control", "no-cache")
    return response


def _is_loopback(host: str | None) -> bool:
    """server.is_loopback for literal addresses and ``localhost`` (ComfyUI also resolves other names)."""
    if host is None:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@web.middleware
async def _origin_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """server.create_origin_only_middleware: on a loopback Host, a request whose Origin names another
    host:port is refused with an empty 403 (a browser page elsewhere may not drive ComfyUI); OPTIONS is 200."""
    if "Host" in request.headers and "Origin" in request.headers:
        host_domain = request.headers["Host"].lower()
        parsed = urllib.parse.urlparse(request.headers["Origin"])
        origin_domain: str | None = parsed.netloc.lower()
        host_parsed = urllib.parse.urlsplit("//" + host_domain)
        loopback = _is_loopback(host_parsed.hostname)
        host_cmp: str | None = host_domain
        if parsed.port is None:
            host_cmp = host_parsed.hostname
        if host_parsed.port is None:
            origin_domain = parsed.hostname
        if loopback and host_cmp and origin_domain and host_cmp != origin_domain:
            return web.Response(status=403)
    if request.method == "OPTIONS":
        return web.Response()
    return await handler(request)


def _empty_200() -> web.Response:
    """ComfyUI's ``web.Response(status=200)``: empty body, no Content-Type (free_response.txt)."""
    return web.Response(status=200)


def _server_trouble() -> web.Response:
    return web.Response(status=500, text=SERVER_TROUBLE)


async def _read_json(request: web.Request) -> Any:
    """``await request.json()``; raises ValueError for a body that is not JSON."""
    return json.loads(await request.text())


class ComfyStandIn:
    """The stand-in server. ``async with ComfyStandIn() as comfy: comfy.url`` or start()/stop()."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        step_seconds: float = 0.0,
        checkpoints: list[str] | None = None,
        data_dir: str | Path | None = None,
        web_root: str | Path = WEB_ROOT,
        **settings: Any,
    ) -> None:
        self.host = host
        self.web_root = Path(web_root)
        self.port = port
        self.settings = StandInSettings(step_seconds=step_seconds)
        if checkpoints is not None:
            self.settings.checkpoints = list(checkpoints)
        self.settings.update(settings)
        self.counters = StandInCounters()
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="comfy-standin-"))
        self.output_dir = self.data_dir / "output"
        self.input_dir = self.data_dir / "input"
        self.temp_dir = self.data_dir / "temp"
        for folder in (self.output_dir, self.input_dir, self.temp_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.hub = SocketHub()
        self.queue = PromptQueue(self._queue_updated)
        self.executor = Executor(self)
        self.number = 0
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task] = []
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = asyncio.Event()

    # ---- lifecycle

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def ws_url(self, client_id: str | None = None) -> str:
        base = f"ws://{self.host}:{self.port}/ws"
        return f"{base}?clientId={client_id}" if client_id else base

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def start(self) -> None:
        # server.PromptServer: middlewares [cache_control, origin_only] and a 100 MB body limit
        # (--max-upload-size 100, features.json max_upload_size); the fault delay goes first.
        middlewares = [self._delay_middleware, _cache_control, _origin_only]
        app = web.Application(middlewares=middlewares, client_max_size=104857600)
        self._add_routes(app)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server  # noqa: SLF001 - the only way to learn the port chosen for port=0
        if self.port == 0 and server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]
        self._tasks = [asyncio.create_task(self.hub.publish_loop()), asyncio.create_task(self._worker())]
        await self._write_gtt()

    async def _pause(self, seconds: float) -> None:
        """An injected delay that ends early when the stand-in stops (so stop() never hangs)."""
        if seconds > 0 and not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._stopping.wait(), seconds)
            except TimeoutError:
                pass

    async def stop(self) -> None:
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._tasks = []
        await self.drop_websockets()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._own_dir:
            await asyncio.to_thread(shutil.rmtree, self.data_dir, True)

    async def __aenter__(self) -> ComfyStandIn:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- helpers for tests

    def registry(self) -> NodeRegistry:
        return NodeRegistry(self.settings.checkpoints, self.settings.loras, self._input_files())

    def _input_exists(self, name: str) -> bool:
        """folder_paths.exists_annotated_filepath for LoadImage's own validation."""
        name, folder = self._annotated(name)
        base = (folder or self.input_dir).resolve()
        path = (base / name).resolve()
        return os.path.commonpath((str(base), str(path))) == str(base) and path.is_file()

    def _input_files(self) -> list[str]:
        return sorted(p.name for p in self.input_dir.iterdir() if p.is_file()) if self.input_dir.exists() else []

    def annotated_input_path(self, name: str) -> Path:
        """folder_paths.get_annotated_filepath: ``name [output]`` picks the folder, else the input folder."""
        name, folder = self._annotated(name)
        return (folder or self.input_dir) / name

    def is_changed(self, prompt: dict) -> dict[str, str]:
        """LoadImage/LoadImageMask.IS_CHANGED: the sha256 of the file (blocking: run in a thread)."""
        out: dict[str, str] = {}
        for node_id, node in prompt.items():
            image = node.get("inputs", {}).get("image")
            if node.get("class_type") in IMAGE_FILE_INPUTS and isinstance(image, str):
                try:
                    out[node_id] = hashlib.sha256(self.annotated_input_path(image).read_bytes()).hexdigest()
                except OSError:
                    out[node_id] = ""
        return out

    async def set_vram_in_use(self, held: int) -> None:
        """What the loaded models hold: /system_stats vram_free and the fake sysfs GTT follow it."""
        self.executor.vram_in_use = max(0, held)
        await self._write_gtt()

    def gtt_used(self) -> int:
        """GTT in use as amdgpu would count it: what was in use before ComfyUI plus its models."""
        s = self.settings
        return s.vram_total - s.vram_free + self.executor.vram_in_use

    async def _write_gtt(self) -> None:
        """``gtt_sysfs_dir``: card0/device/mem_info_gtt_used and _total, as amdgpu's sysfs shows them."""
        if not self.settings.gtt_sysfs_dir:
            return
        device = Path(self.settings.gtt_sysfs_dir) / "card0" / "device"
        used, total = self.gtt_used(), self.settings.vram_total

        def write() -> None:
            device.mkdir(parents=True, exist_ok=True)
            for name, value in (("mem_info_gtt_used", used), ("mem_info_gtt_total", total)):
                tmp = device / f".{name}.tmp"
                tmp.write_text(f"{value}\n", encoding="ascii")
                tmp.replace(device / name)

        await asyncio.to_thread(write)

    @property
    def history(self) -> dict[str, dict]:
        return self.queue.history

    @property
    def models_loaded(self) -> bool:
        return self.executor.models_loaded

    async def wait_idle(self, timeout: float = 10.0) -> None:
        """Until nothing is pending or running and every ws message has been sent."""
        await asyncio.wait_for(self._idle.wait(), timeout)
        await asyncio.wait_for(self.hub.wait_drained(), timeout)

    def interrupt(self) -> None:
        """nodes.interrupt_processing(): the running prompt stops at its next check."""
        self.executor.interrupt_event.set()

    async def drop_websockets(self) -> int:
        """Close every open websocket (the client sees the connection end)."""
        return await self.hub.close_all()

    async def save_images(self, image: Image, prefix: str, type_: str, text: dict[str, str]) -> list[dict]:
        base = self.output_dir if type_ == "output" else self.temp_dir
        normalized = os.path.normpath(prefix)
        subfolder, filename = os.path.dirname(normalized), os.path.basename(normalized)
        folder = (base / subfolder).resolve()
        if os.path.commonpath((str(base.resolve()), str(folder))) != str(base.resolve()):
            raise NodeFailure("**** ERROR: Saving image outside the output folder is not allowed.", "Exception")
        return await asyncio.to_thread(_save_pngs, folder, subfolder, filename, image, type_, text)

    def _queue_updated(self) -> None:
        """server.queue_updated: broadcast ``status`` with queue_remaining."""
        self._idle.clear() if self.queue.remaining() else self._idle.set()
        self.hub.send_sync("status", {"status": self._queue_info()}, None)

    def _queue_info(self) -> dict:
        return {"exec_info": {"queue_remaining": self.queue.remaining()}}

    # ---- worker (main.prompt_worker)

    async def _worker(self) -> None:
        while True:
            got = await self.queue.get()
            if got is not None:
                item, task_id = got
                try:
                    await self._run_item(item, task_id)
                except Exception:  # noqa: BLE001 - a stand-in bug must not stop the queue
                    traceback.print_exc()
                    self.queue.running.pop(task_id, None)
                    self._queue_updated()
            await self._apply_flags(self.queue.take_flags())

    async def _run_item(self, item: QueueItem, task_id: int) -> None:
        counters = self.counters
        counters.prompts_started += 1
        ex = self.executor
        await ex.execute(item)
        if ex.success:
            counters.prompts_succeeded += 1
        elif ex.status_messages and ex.status_messages[-1][0] == "execution_interrupted":
            counters.prompts_interrupted += 1
        else:
            counters.prompts_failed += 1
        status = {
            "status_str": "success" if ex.success else "error",
            "completed": ex.success,
            "messages": ex.status_messages,
        }
        self.queue.task_done(task_id, dict(ex.outputs_ui), dict(ex.meta), status)
        if self.hub.client_id is not None:
            self.hub.send_sync("executing", {"node": None, "prompt_id": item.prompt_id}, self.hub.client_id)
        self.hub.end_prompt()

    async def _apply_flags(self, flags: dict) -> None:
        """POST /free takes effect between prompts (main.prompt_worker reads q.get_flags() after
        task_done); free_memory implies unload_models."""
        free_memory = flags.get("free_memory", False)
        if flags.get("unload_models", free_memory):
            await self.executor.unload_models()
        if free_memory:
            self.executor.reset()

    # ---- routes

    def _add_routes(self, app: web.Application) -> None:
        routes = [
            ("GET", "/system_stats", self.get_system_stats),
            ("GET", "/queue", self.get_queue),
            ("POST", "/queue", self.post_queue),
            ("GET", "/prompt", self.get_prompt),
            ("POST", "/prompt", self.post_prompt),
            ("GET", "/history", self.get_history),
            ("GET", "/history/{prompt_id}", self.get_history_item),
            ("POST", "/history", self.post_history),
            ("GET", "/view", self.get_view),
            ("POST", "/interrupt", self.post_interrupt),
            ("POST", "/free", self.post_free),
            ("GET", "/object_info", self.get_object_info),
            ("GET", "/object_info/{node_class}", self.get_object_info_node),
            ("GET", "/models", self.get_models),
            ("GET", "/models/{folder}", self.get_models_folder),
            ("GET", "/embeddings", self.get_embeddings),
            ("GET", "/features", self.get_features),
            ("GET", "/extensions", self.get_extensions),
            ("GET", "/settings", self.get_settings),
            ("GET", "/users", self.get_users),
            ("GET", "/ws", self.websocket),
            ("POST", "/upload/image", self.post_upload_image),
            ("POST", "/upload/mask", self.post_upload_mask),
            ("GET", "/", self.get_root),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)
            app.router.add_route(method, "/api" + path, handler)
        app.router.add_get("/_standin/state", self.control_state)
        app.router.add_post("/_standin/config", self.control_config)
        app.router.add_post("/_standin/drop_websockets", self.control_drop_websockets)
        app.router.add_post("/_standin/reset_counters", self.control_reset_counters)
        # server.add_routes: the frontend's files last, so every API route wins over them.
        app.router.add_static("/", self.web_root)

    @web.middleware
    async def _delay_middleware(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        """``http_delay_seconds``: every ComfyUI route answers late (control routes never)."""
        if not request.path.startswith("/_standin/"):
            await self._pause(self.settings.http_delay_seconds)
        return await handler(request)

    async def get_system_stats(self, request: web.Request) -> web.Response:
        """system_stats.json with the configured RAM/VRAM numbers."""
        self.counters.system_stats_requests += 1
        await self._pause(self.settings.system_stats_delay_seconds)
        stats = copy.deepcopy(load_capture("system_stats.json"))
        s = self.settings
        stats["system"]["ram_total"], stats["system"]["ram_free"] = s.ram_total, s.ram_free
        vram_free = s.vram_free - self.executor.vram_in_use
        device = stats["devices"][0]
        device.update(vram_total=s.vram_total, vram_free=vram_free, torch_vram_total=s.vram_total, torch_vram_free=vram_free)
        return web.json_response(stats)

    async def get_queue(self, request: web.Request) -> web.Response:
        """queue_busy.json: running and pending as 5-item arrays."""
        return web.json_response(
            {
                "queue_running": [item.as_list() for item in self.queue.running_items()],
                "queue_pending": [item.as_list() for item in self.queue.pending],
            }
        )

    async def post_queue(self, request: web.Request) -> web.Response:
        """``{"clear": true}`` / ``{"delete": [ids]}`` → 200 empty (queue_*_response.txt)."""
        self.counters.queue_posts += 1
        try:
            body = await _read_json(request)
            if "clear" in body and body["clear"]:
                self.queue.wipe()
            if "delete" in body:
                for prompt_id in body["delete"]:
                    self.queue.delete(prompt_id)
        except (ValueError, TypeError, AttributeError):
            return _server_trouble()
        return _empty_200()

    async def get_prompt(self, request: web.Request) -> web.Response:
        """prompt_get_idle.json / prompt_get_busy.json."""
        return web.json_response(self._queue_info())

    async def post_prompt(self, request: web.Request) -> web.Response:
        """server.post_prompt: number counts every call, validation, queue (prompt_ok*.json, prompt_error_*.json)."""
        self.counters.prompts_submitted += 1
        if self.settings.post_prompt_500 > 0:
            self.settings.post_prompt_500 -= 1
            return _server_trouble()
        try:
            body = await _read_json(request)
            return self._accept_prompt(body)
        except Exception:  # noqa: BLE001 - whatever ComfyUI would raise becomes aiohttp's 500 page
            return _server_trouble()

    def _accept_prompt(self, body: Any) -> web.Response:
        if "number" in body:
            number: float = float(body["number"])
        else:
            number = -self.number if "front" in body and body["front"] else self.number
            self.number += 1
        if "prompt" not in body:
            self.counters.prompts_rejected += 1
            error = {"type": "no_prompt", "message": "No prompt provided", "details": "No prompt provided", "extra_info": {}}
            return web.json_response({"error": error, "node_errors": {}}, status=400)
        prompt = body["prompt"]
        if not isinstance(prompt, dict):
            raise TypeError("prompt must be an object")
        prompt_id = str(body.get("prompt_id", uuid.uuid4()))
        validator = Validator(self.registry(), self._input_exists)
        valid, error, outputs, node_errors = validator.validate_prompt(prompt, body.get("partial_execution_targets"))
        extra_data = dict(body.get("extra_data", {}))
        if "client_id" in body:
            extra_data["client_id"] = body["client_id"]
        if not valid:
            self.counters.prompts_rejected += 1
            return web.json_response({"error": error, "node_errors": node_errors}, status=400)
        self.counters.prompts_accepted += 1
        self.queue.put(QueueItem(number, prompt_id, prompt, extra_data, outputs))
        return web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": node_errors})

    async def get_history(self, request: web.Request) -> web.Response:
        """history_max_items_2.json / history_paging.json."""
        self.counters.history_requests += 1
        query = request.rel_url.query
        max_items = int(query["max_items"]) if "max_items" in query else None
        offset = int(query["offset"]) if "offset" in query else -1
        return web.json_response(self.queue.get_history(max_items=max_items, offset=offset))

    async def get_history_item(self, request: web.Request) -> web.Response:
        """``{id: entry}``, or ``{}`` while running / unknown / deleted (history_while_running.json)."""
        self.counters.history_requests += 1
        return web.json_response(self.queue.get_history(request.match_info["prompt_id"]))

    async def post_history(self, request: web.Request) -> web.Response:
        """``{"clear": true}`` / ``{"delete": [ids]}`` → 200 empty (history_*_response.txt)."""
        try:
            body = await _read_json(request)
            if "clear" in body and body["clear"]:
                self.queue.history.clear()
            if "delete" in body:
                for prompt_id in body["delete"]:
                    self.queue.history.pop(prompt_id, None)
        except (ValueError, TypeError, AttributeError):
            return _server_trouble()
        return _empty_200()

    async def get_view(self, request: web.Request) -> web.StreamResponse:
        """server.view_image: 400 for traversal or a bad type, 404 empty for a missing file
        (view_path_traversal.json, view_bad_type.json, view_missing_file.json); ``preview=`` and
        ``channel=`` conversions answered from memory (view_preview_webp_headers.json,
        view_channel_a_headers.json: no Etag), else the file (view_input_headers.json). A
        conversion of a file Pillow cannot read is ComfyUI's 500 page."""
        self.counters.view_requests += 1
        query = request.rel_url.query
        if "filename" not in query:
            return web.Response(status=404)
        filename, annotated_dir = self._annotated(query["filename"])
        if not filename:
            return web.Response(status=400)
        if filename[0] == "/" or ".." in filename:
            return web.Response(status=400)
        base = annotated_dir or self._dir_for_type(query.get("type", "output"))
        if base is None:
            return web.Response(status=400)
        folder = base
        if "subfolder" in query:
            folder = (base / query["subfolder"]).resolve()
            if os.path.commonpath((str(folder), str(base.resolve()))) != str(base.resolve()):
                return web.Response(status=403)
        path = folder / os.path.basename(filename)
        if not await asyncio.to_thread(path.is_file):
            return web.Response(status=404)
        name = os.path.basename(filename)
        disposition = {"Content-Disposition": f'filename="{name}"'}
        try:
            variant = await asyncio.to_thread(media.view_variant, path, query.get("preview"), query.get("channel"))
        except Exception:  # noqa: BLE001 - an exception in view_image is aiohttp's 500 page
            return _server_trouble()
        if variant is not None:
            body, content_type = variant
            return web.Response(body=body, content_type=content_type, headers=disposition)
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return web.FileResponse(path, headers={**disposition, "Content-Type": content_type})

    # ---- uploads (server.image_upload / upload_image / upload_mask)

    async def post_upload_image(self, request: web.Request) -> web.Response:
        """multipart ``image`` (+ ``overwrite``, ``type``, ``subfolder``) → ``{"name","subfolder","type"}``
        (upload_image_*.json)."""
        return await self._upload(request, mask=False)

    async def post_upload_mask(self, request: web.Request) -> web.Response:
        """Like /upload/image, but the file written is ``original_ref``'s image with this upload's alpha
        (upload_mask_response.json)."""
        return await self._upload(request, mask=True)

    async def _upload(self, request: web.Request, mask: bool) -> web.Response:
        self.counters.uploads += 1
        try:
            post = await request.post()
            upload = _Upload.parse(post, self._upload_dirs())
            if upload is None:
                return web.Response(status=400)
            save = self._save_mask(post.get("original_ref")) if mask else None
            result = await asyncio.to_thread(upload.store, save)
        except web.HTTPException:
            raise  # aiohttp's own answers, e.g. 413 for a body over client_max_size
        except Exception:  # noqa: BLE001 - what raises in ComfyUI's handler is aiohttp's 500 page
            return _server_trouble()
        if result is None:
            return web.Response(status=400)
        return web.json_response(result)

    def _upload_dirs(self) -> dict[str, str]:
        """server.get_dir_by_type: absolute folder per upload ``type``."""
        return {name: os.path.abspath(folder) for name, folder in (("input", self.input_dir), ("temp", self.temp_dir), ("output", self.output_dir))}

    def _save_mask(self, original_ref: Any) -> Callable[[bytes, str], None]:
        """upload_mask's image_save_function. Its refusals (bad name, type, subfolder; missing original)
        are ignored by image_upload in ComfyUI: the answer is still 200 with a name, and no file is
        written. A missing/non-JSON ``original_ref`` raises (500)."""
        dirs = self._upload_dirs()

        def save(mask_bytes: bytes, filepath: str) -> None:
            ref = json.loads(original_ref)
            filename, annotated = self._annotated(ref["filename"])
            if not filename or filename[0] == "/" or ".." in filename:
                return
            output_dir = os.path.abspath(annotated) if annotated is not None else dirs.get(ref.get("type", "output"))
            if output_dir is None:
                return
            if ref.get("subfolder", "") != "":
                full = os.path.join(output_dir, ref["subfolder"])
                if os.path.commonpath((os.path.abspath(full), output_dir)) != output_dir:
                    return
                output_dir = full
            original = os.path.join(output_dir, filename)
            if os.path.isfile(original):
                media.paste_mask_alpha(Path(original), mask_bytes, Path(filepath))

        return save

    # ---- the frontend (server.get_root + the static route)

    async def get_root(self, request: web.Request) -> web.StreamResponse:
        """index.html with ``Cache-Control: no-cache``, ``Pragma: no-cache``, ``Expires: 0``
        (server.get_root at the recorded commit; later versions send ``no-store, must-revalidate``)."""
        response = web.FileResponse(self.web_root / "index.html")
        response.headers["Cache-Control"] = "no-cache"
        response.headers["Pragma"] = "no-cache"
        response.headers["Expires"] = "0"
        return response

    def _dir_for_type(self, type_: str) -> Path | None:
        return {"output": self.output_dir, "input": self.input_dir, "temp": self.temp_dir}.get(type_)

    def _annotated(self, name: str) -> tuple[str, Path | None]:
        """folder_paths.annotated_filepath: ``name.png [output]`` picks the folder."""
        for type_ in ("output", "input", "temp"):
            suffix = f" [{type_}]"
            if name.endswith(suffix):
                return name[: -len(suffix)], self._dir_for_type(type_)
        return name, None

    async def post_interrupt(self, request: web.Request) -> web.Response:
        """By prompt_id only if that prompt runs; without a body: global (interrupt_*_response.txt)."""
        self.counters.interrupt_calls += 1
        try:
            body = await _read_json(request)
        except ValueError:
            body = {}
        prompt_id = body.get("prompt_id") if isinstance(body, dict) else None
        if prompt_id:
            if any(item.prompt_id == prompt_id for item in self.queue.running_items()):
                self.interrupt()
        else:
            self.interrupt()
        return _empty_200()

    async def post_free(self, request: web.Request) -> web.Response:
        """Flags for the worker; 200 empty, no Content-Type; non-JSON → 500 (free_*_response.txt)."""
        self.counters.free_calls += 1
        if self.settings.free_500 > 0:
            self.settings.free_500 -= 1
            return _server_trouble()
        try:
            body = await _read_json(request)
            self.counters.free_bodies.append(body)
            unload_models = body.get("unload_models", False)
            free_memory = body.get("free_memory", False)
        except (ValueError, AttributeError):
            return _server_trouble()
        if unload_models:
            self.queue.set_flag("unload_models", unload_models)
        if free_memory:
            self.queue.set_flag("free_memory", free_memory)
        return _empty_200()

    async def get_object_info(self, request: web.Request) -> web.Response:
        """object_info_core_subset.json + object_info_extra_subset.json (with this machine's lists)."""
        return web.json_response(self.registry().info)

    async def get_object_info_node(self, request: web.Request) -> web.Response:
        """object_info_KSampler.json; an unknown class is 200 ``{}`` (object_info_unknown_node.json)."""
        node_class = request.match_info["node_class"]
        info = self.registry().info
        return web.json_response({node_class: info[node_class]} if node_class in info else {})

    async def get_models(self, request: web.Request) -> web.Response:
        return web.json_response(load_capture("models.json"))

    async def get_models_folder(self, request: web.Request) -> web.Response:
        """models_checkpoints.json; an unknown folder is 404 with an empty body (models_unknown_folder.json)."""
        folder = request.match_info["folder"]
        if folder == "checkpoints":
            return web.json_response(sorted(self.settings.checkpoints))
        if folder == "loras":
            return web.json_response(sorted(self.settings.loras))
        if folder in load_capture("models.json"):
            return web.json_response([])
        return web.Response(status=404)

    async def get_embeddings(self, request: web.Request) -> web.Response:
        return web.json_response(load_capture("embeddings.json"))

    async def get_features(self, request: web.Request) -> web.Response:
        return web.json_response(load_capture("features.json"))

    async def get_extensions(self, request: web.Request) -> web.Response:
        return web.json_response(load_capture("extensions.json"))

    async def get_settings(self, request: web.Request) -> web.Response:
        return web.json_response(load_capture("settings.json"))

    async def get_users(self, request: web.Request) -> web.Response:
        return web.json_response(load_capture("users.json"))

    # ---- websocket (server.websocket_handler)

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        """``status`` with ``sid`` first; feature_flags answered if sent first; same clientId replaces.

        As in ComfyUI, the socket's clientId entry is removed when *any* socket with that id
        closes, so closing a replaced socket also silences its replacement.
        """
        if self.settings.ws_reject:
            return web.Response(status=503, text="stand-in: websockets rejected")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.counters.ws_connects += 1
        self.hub.all_open.add(ws)
        try:
            if self.settings.ws_silent:
                async for _ in ws:
                    pass
                return ws
            await self._serve_socket(ws, request.rel_url.query.get("clientId", ""))
        finally:
            self.hub.all_open.discard(ws)
        return ws

    async def _serve_socket(self, ws: web.WebSocketResponse, sid: str) -> None:
        hub = self.hub
        if sid:
            hub.sockets.pop(sid, None)
        else:
            sid = uuid.uuid4().hex
        hub.sockets[sid] = ws
        hub.metadata[sid] = {"feature_flags": {}}
        try:
            await ws.send_json({"type": "status", "data": {"status": self._queue_info(), "sid": sid}})
            if hub.client_id == sid and hub.last_node_id is not None:
                await ws.send_json({"type": "executing", "data": {"node": hub.last_node_id}})
            first = True
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    continue
                if first and isinstance(data, dict) and data.get("type") == "feature_flags":
                    hub.metadata[sid]["feature_flags"] = data.get("data", {})
                    await ws.send_json({"type": "feature_flags", "data": load_capture("features.json")})
                first = False
        finally:
            hub.sockets.pop(sid, None)
            hub.metadata.pop(sid, None)

    # ---- control API

    def state(self) -> dict:
        """Settings, counters and a little internal state, as ``GET /_standin/state`` serves them."""
        return {
            "settings": dataclasses.asdict(self.settings),
            "counters": dataclasses.asdict(self.counters),
            "models_loaded": self.executor.models_loaded,
            "vram_in_use": self.executor.vram_in_use,
            "queue_remaining": self.queue.remaining(),
            "websockets": len(self.hub.all_open),
            "history_ids": list(self.queue.history),
        }

    async def control_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state())

    async def control_config(self, request: web.Request) -> web.Response:
        """Change settings: ``{"step_seconds": 0.1, "fail_next_prompts": 1}``; 400 on a bad key/value."""
        try:
            changes = await _read_json(request)
            if not isinstance(changes, dict):
                raise ValueError("body must be a JSON object")
            self.settings.update(changes)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        await self._write_gtt()
        return web.json_response(dataclasses.asdict(self.settings))

    async def control_drop_websockets(self, request: web.Request) -> web.Response:
        return web.json_response({"dropped": await self.drop_websockets()})

    async def control_reset_counters(self, request: web.Request) -> web.Response:
        self.counters = StandInCounters()
        return web.json_response(dataclasses.asdict(self.counters))


# --------------------------------------------------------------------------- running as a process


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (for tests that must know the port before start)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class StandInProcess:
    """The stand-in as a child process: ``async with StandInProcess(step_seconds=0.05) as comfy: comfy.url``.

    ``start()`` waits for the ``READY <url>`` line (``ready_timeout`` seconds). With
    ``wait_ready=False`` it returns at once (to test readiness waits with ``startup_delay``).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        step_seconds: float = 0.0,
        startup_delay: float = 0.0,
        extra_args: list[str] | None = None,
        ready_timeout: float = 20.0,
    ) -> None:
        self.host = host
        self.port = port if port or not startup_delay else free_port(host)
        self.step_seconds = step_seconds
        self.startup_delay = startup_delay
        self.extra_args = extra_args or []
        self.ready_timeout = ready_timeout
        self.proc: asyncio.subprocess.Process | None = None
        self.url = f"http://{host}:{self.port}" if self.port else ""

    async def start(self, wait_ready: bool = True) -> str:
        args = [
            sys.executable, "-m", "tests.support.comfyui_standin",
            "--host", self.host, "--port", str(self.port),
            "--step-seconds", str(self.step_seconds), "--startup-delay", str(self.startup_delay),
            *self.extra_args,
        ]  # fmt: skip
        self.proc = await asyncio.create_subprocess_exec(*args, cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE)
        if wait_ready:
            await self.wait_ready()
        return self.url

    async def wait_ready(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), self.ready_timeout)
        text = line.decode().strip()
        if not text.startswith("READY "):
            raise RuntimeError(f"stand-in did not start: {text!r}")
        self.url = text.split(" ", 1)[1]
        self.port = int(self.url.rsplit(":", 1)[1])
        return self.url

    async def stop(self) -> int | None:
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None or self.proc.returncode is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), self.ready_timeout)
        except TimeoutError:
            self.proc.kill()
            return await self.proc.wait()

    async def configure(self, **changes: Any) -> dict:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{self.url}/_standin/config", json=changes) as resp:
                resp.raise_for_status()
                return await resp.json()

    async def state(self) -> dict:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{self.url}/_standin/state") as resp:
                return await resp.json()

    async def __aenter__(self) -> StandInProcess:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.support.comfyui_standin", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--step-seconds", type=float, default=0.0)
    parser.add_argument("--render-seconds", type=float, default=0.0)
    parser.add_argument("--startup-delay", type=float, default=0.0, help="sleep this long before listening")
    parser.add_argument("--checkpoints", default=None, help="comma-separated checkpoint file names")
    parser.add_argument("--data-dir", default=None, help="input/output/temp folders (default: a temp dir)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=JSON",
        help="any StandInSettings field, e.g. --set fail_next_prompts=1 --set 'loras=[\"a.safetensors\"]'",
    )  # fmt: skip
    return parser.parse_args(argv)


def _parse_sets(pairs: list[str]) -> dict[str, Any]:
    """``NAME=JSON`` pairs; a value that is not JSON is taken as a string."""
    settings: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set needs NAME=VALUE, got {pair!r}")
        try:
            settings[name] = json.loads(raw)
        except ValueError:
            settings[name] = raw
    return settings


async def _serve(args: argparse.Namespace) -> None:
    """Listen after ``--startup-delay``, print ``READY <url>``, stop on SIGTERM/SIGINT (also during the delay)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.startup_delay > 0:
        try:
            await asyncio.wait_for(stop.wait(), args.startup_delay)
            return
        except TimeoutError:
            pass
    checkpoints = args.checkpoints.split(",") if args.checkpoints else None
    standin = ComfyStandIn(
        host=args.host, port=args.port, step_seconds=args.step_seconds, render_seconds=args.render_seconds,
        checkpoints=checkpoints, data_dir=args.data_dir, **_parse_sets(args.set),
    )  # fmt: skip
    await standin.start()
    print(f"READY {standin.url}", flush=True)
    try:
        await stop.wait()
    finally:
        await standin.stop()


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        StandInSettings().update(_parse_sets(args.set))
    except ValueError as exc:
        raise SystemExit(f"comfyui_standin: {exc}") from None
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
