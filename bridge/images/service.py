"""The image pipeline, top to bottom: validated request -> workflow -> GPU gate -> ComfyUI -> cache -> answer.

Everything that can be checked without the GPU (the request, the rendered workflow graph) is checked
before :meth:`GpuGate.ensure_generation` may trigger a switchover, so a bad request never moves the GPU.
"""

from __future__ import annotations

import base64
import logging
import secrets
import time
from typing import Any

from .. import errors
from ..comfyui.errors import ComfyUIError
from ..comfyui.facade import ComfyUI
from ..config import Config
from ..errors import ApiError
from ..gpu.gate import GpuGate
from ..signing import UrlSigner
from ..status import StatusHub
from .cache import ImageCache
from .request import MAX_SEED, ImageRequest
from .workflows import WorkflowRenderer, build_params

_LOGGER = logging.getLogger(__name__)
CACHE_ROUTE = "/api/images/cache/"
FILENAME_PREFIX = "hal0/hal0"


class ImageService:
    def __init__(
        self,
        config: Config,
        hub: StatusHub,
        renderer: WorkflowRenderer,
        comfy: ComfyUI,
        cache: ImageCache,
        gate: GpuGate,
        signer: UrlSigner | None = None,
    ) -> None:
        self._config = config
        self._hub = hub
        self._renderer = renderer
        self._comfy = comfy
        self._cache = cache
        self._gate = gate
        self._signer = signer

    def image_url(self, name: str) -> str:
        """The cache URL of an image; signed and expiring when a token guards the API (docs/security.md)."""
        path = f"{CACHE_ROUTE}{name}"
        if self._signer is not None:
            path = self._signer.sign(path)
        public = self._config.server.public_url
        return f"{public}{path}" if public else path

    async def generate(self, req: ImageRequest) -> dict[str, Any]:
        spec = req.model
        seed = req.seed if req.seed is not None else secrets.randbelow(MAX_SEED + 1)
        steps = req.steps if req.steps is not None else spec.steps
        cfg = req.cfg if req.cfg is not None else spec.cfg
        params = build_params(
            spec,
            prompt=req.prompt,
            negative_prompt=req.negative_prompt,
            seed=seed,
            steps=steps,
            cfg=cfg,
            width=req.width,
            height=req.height,
            batch_size=req.n,
            filename_prefix=FILENAME_PREFIX,
        )
        graph = self._renderer.render(spec.template, params)  # 422 workflow_invalid before any GPU work

        timings: dict[str, float] = {}
        started = time.monotonic()
        try:
            await self._gate.ensure_generation("image")
            timings["switch_s"] = round(time.monotonic() - started, 4)
            async with self._gate.image_activity():
                render_started = time.monotonic()
                result = await self._comfy.render(graph)
                images = await self._comfy.fetch_images(result)
                timings["render_s"] = round(time.monotonic() - render_started, 4)
            if not images:  # never 200 with an empty ``data`` (DESIGN §8)
                raise ApiError(
                    errors.UPSTREAM_FAILED,
                    "ComfyUI finished the render without recording an image",
                    details={"prompt_id": result.prompt_id},
                )
        except ComfyUIError as err:
            api_error = err.to_api_error()
            self._failed(api_error, spec.name)
            raise api_error from err
        except ApiError as err:
            self._failed(err, spec.name)
            raise

        names = [await self._cache.store(png) for png in images]
        await self._comfy.outputs.remove(result.images)  # ComfyUI's disk stays bounded (comfyui/outputs.py)
        timings["total_s"] = round(time.monotonic() - started, 4)
        urls = [self.image_url(name) for name in names]
        data = (
            [{"b64_json": base64.b64encode(png).decode("ascii")} for png in images]
            if req.response_format == "b64_json"
            else [{"url": url} for url in urls]
        )
        used = {
            "model": spec.name,
            "template": spec.template,
            "checkpoint": spec.checkpoint,
            "seed": seed,
            "steps": steps,
            "cfg": cfg,
            "sampler": spec.sampler,
            "scheduler": spec.scheduler,
            "size": f"{req.width}x{req.height}",
            "n": len(images),
            "prompt_id": result.prompt_id,
            "cached": result.cached,
            "urls": urls,
            "timings": {**timings, **result.timings},
        }
        self._hub.emit("image_generated", **used)
        return {"created": int(time.time()), "data": data, "_hal0": used}

    def _failed(self, err: ApiError, model: str) -> None:
        _LOGGER.warning("image generation failed (%s): %s", err.code, err.message)
        self._hub.emit("render_failed", code=err.code, message=err.message, model=model)
