"""The image pipeline, top to bottom: validated request -> workflow -> GPU gate -> ComfyUI -> cache -> answer.

Everything that can be checked without the GPU (the request, an edit's uploads, the rendered workflow
graph) is checked before :meth:`GpuGate.ensure_generation` may trigger a switchover, so a bad request
never moves the GPU. Generations and edits share the pipeline; an edit adds staging its uploads in
ComfyUI (:mod:`.staging`) and renders an img2img or inpaint template. A stream's partial images come
from ComfyUI's latent previews (:mod:`.partials`), handed to the caller's sink as they arrive.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from .. import errors
from ..comfyui.errors import ComfyUIError
from ..comfyui.facade import ComfyUI
from ..config import Config
from ..errors import ApiError
from ..gpu.gate import GpuGate
from ..signing import UrlSigner
from ..status import StatusHub
from .answers import Rendered
from .cache import ImageCache
from .catalogue import ModelSpec
from .formats import FORMATS, encode_all
from .inputs import EditInput
from .partials import PartialSink, PreviewPicker
from .request import MAX_SEED, ImageRequest
from .staging import EditStaging, Staged
from .workflows import SAMPLE_IMAGE, SAMPLE_MASK, WorkflowRenderer, build_params

_LOGGER = logging.getLogger(__name__)
CACHE_ROUTE = "/api/images/cache/"
FILENAME_PREFIX = "hal0/hal0"


def edit_template(spec: ModelSpec, edit: EditInput) -> str:
    """The model's img2img or inpaint template, or 422 naming the config key that would add it."""
    template = spec.edit_template(edit.inpaint)
    if template is None:
        key = "inpaint_template" if edit.inpaint else "img2img_template"
        raise ApiError(
            errors.INVALID_PARAMETER,
            f"model {spec.name!r} cannot edit images: it has no {key} (set models.{spec.name}.{key})",
            param="model",
        )
    return template


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
        self.staging = EditStaging(comfy.client, config.image.edit_slots, config.node_id)

    def image_url(self, name: str) -> str:
        """The cache URL of an image; signed and expiring when a token guards the API (docs/security.md)."""
        path = f"{CACHE_ROUTE}{name}"
        if self._signer is not None:
            path = self._signer.sign(path)
        public = self._config.server.public_url
        return f"{public}{path}" if public else path

    async def generate(self, req: ImageRequest) -> dict[str, Any]:
        """The JSON answer (``response_format``); streams use :meth:`render` with a sink."""
        return (await self.render(req)).answer(req.response_format)

    async def render(self, req: ImageRequest, on_partial: PartialSink | None = None) -> Rendered:
        spec = req.model
        edit = req.edit
        template = spec.template if edit is None else edit_template(spec, edit)
        seed = req.seed if req.seed is not None else secrets.randbelow(MAX_SEED + 1)
        steps = req.steps if req.steps is not None else spec.steps
        cfg = req.cfg if req.cfg is not None else spec.cfg

        def graph_for(image: str = "", mask: str = "") -> dict[str, Any]:
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
                image=image,
                mask=mask,
                denoise=req.strength if edit is not None else 1.0,
            )
            return self._renderer.render(template, params)

        # 422 workflow_invalid before any GPU work (an edit's real file names come with its slot)
        graph = graph_for(SAMPLE_IMAGE, SAMPLE_MASK) if edit is not None else graph_for()
        picker = PreviewPicker(steps, req.partial_images, on_partial) if on_partial is not None else None

        timings: dict[str, float] = {}
        started = time.monotonic()
        try:
            await self._gate.ensure_generation("image")
            timings["switch_s"] = round(time.monotonic() - started, 4)
            async with self._gate.image_activity(), self._staged(edit) as staged:
                if staged is not None:
                    timings["upload_s"] = staged.upload_s
                    graph = graph_for(staged.image, staged.mask)
                render_started = time.monotonic()
                result = await self._comfy.render(graph, on_preview=picker)
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

        fmt = FORMATS[req.output_format]
        encoded = await encode_all(images, fmt.name, req.output_compression)
        names = [await self._cache.store(image, fmt) for image in encoded]
        await self._comfy.outputs.remove(result.images)  # ComfyUI's disk stays bounded (comfyui/outputs.py)
        timings["total_s"] = round(time.monotonic() - started, 4)
        urls = [self.image_url(name) for name in names]
        size = f"{req.width}x{req.height}"
        used: dict[str, Any] = {
            "model": spec.name,
            "template": template,
            "checkpoint": spec.checkpoint,
            "seed": seed,
            "steps": steps,
            "cfg": cfg,
            "sampler": spec.sampler,
            "scheduler": spec.scheduler,
            "size": size,
            "n": len(images),
            "prompt_id": result.prompt_id,
            "cached": result.cached,
            "output_format": fmt.name,
            "urls": urls,
            "timings": {**timings, **result.timings},
        }
        if edit is not None:
            used["edit"] = {
                "mode": "inpaint" if edit.inpaint else "img2img",
                "strength": req.strength,
                "mask": edit.mask_source,
                "source_size": f"{edit.image.width}x{edit.image.height}",
                "source_format": edit.image.format,
            }
        self._hub.emit("image_generated", **used)
        return Rendered(int(time.time()), encoded, urls, fmt.name, size, used)

    @contextlib.asynccontextmanager
    async def _staged(self, edit: EditInput | None) -> AsyncIterator[Staged | None]:
        if edit is None:
            yield None
            return
        async with self.staging.stage(edit) as staged:
            yield staged

    def _failed(self, err: ApiError, model: str) -> None:
        _LOGGER.warning("image generation failed (%s): %s", err.code, err.message)
        self._hub.emit("render_failed", code=err.code, message=err.message, model=model)
