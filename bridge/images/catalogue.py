"""The curated image catalogue: which models a client may ask for, and how each one is rendered.

Clients name a model (``sdxl-turbo``, or an alias such as ``sdxl``); the catalogue turns that name into a
:class:`ModelSpec` carrying the template, checkpoint and sampling defaults. Only curated models can be
requested, so a request can never make ComfyUI load an arbitrary file. Built-ins cover the two model
families shipped with templates; ``[models.NAME]`` in the config adds models or overrides a built-in's keys.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from .. import errors
from ..config import Config, ConfigError, ModelConfig
from ..errors import ApiError


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One curated model. ``size`` None means "use ``[image] default_size``"."""

    name: str
    template: str
    checkpoint: str
    steps: int
    cfg: float
    sampler: str
    scheduler: str
    size: tuple[int, int] | None
    aliases: tuple[str, ...] = ()
    description: str = ""
    # /v1/images/edits: source image only (img2img) and source with a mask (inpaint); None = no edits
    img2img_template: str | None = None
    inpaint_template: str | None = None

    def edit_template(self, inpaint: bool) -> str | None:
        return self.inpaint_template if inpaint else self.img2img_template

    def templates(self) -> tuple[str, ...]:
        """Every template this model renders (checked at start-up)."""
        return tuple(t for t in (self.template, self.img2img_template, self.inpaint_template) if t)


BUILTIN_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="sdxl-turbo",
        template="sdxl-turbo",
        checkpoint="sd_xl_turbo_1.0_fp16.safetensors",
        steps=4,
        cfg=1.0,
        sampler="euler_ancestral",
        scheduler="sgm_uniform",
        size=None,
        aliases=("sdxl", "sdxl_turbo", "sd-xl-turbo"),
        description="SDXL Turbo: fast few-step generation, native 1024x1024 (adversarial diffusion distillation)",
        img2img_template="sdxl-turbo-img2img",
        inpaint_template="sdxl-turbo-inpaint",
    ),
    ModelSpec(
        name="sd-1.5-pruned-emaonly",
        template="sd-1.5",
        checkpoint="v1-5-pruned-emaonly.safetensors",
        steps=20,
        cfg=7.0,
        sampler="euler",
        scheduler="normal",
        size=(512, 512),
        aliases=("sd-1.5", "sd1.5", "sd15", "sd-15", "v1-5-pruned-emaonly"),
        description="Stable Diffusion 1.5 (pruned, EMA only), native 512x512",
        img2img_template="sd-1.5-img2img",
        inpaint_template="sd-1.5-inpaint",
    ),
)


def _parse_size(value: str) -> tuple[int, int]:
    """Config sizes are already validated as ``WxH``."""
    width, height = value.lower().split("x")
    return int(width), int(height)


# what a configured model that is not a built-in gets for the keys it leaves out
CONFIG_DEFAULTS = {"steps": 20, "cfg": 7.0, "sampler": "euler", "scheduler": "normal", "aliases": (),
                   "description": "", "img2img_template": None, "inpaint_template": None}


def spec_from_config(model: ModelConfig, base: ModelSpec | None = None) -> ModelSpec:
    """A ``[models.NAME]`` table as a spec; keys it leaves out come from ``base`` (the built-in of the
    same name) or, for a new model, from :data:`CONFIG_DEFAULTS` (template and checkpoint required)."""

    def pick(key: str) -> Any:
        value = getattr(model, key)
        if value is not None:
            return value
        if base is not None:
            return getattr(base, key)
        if key not in CONFIG_DEFAULTS:
            raise ConfigError(f"models.{model.name}.{key}: required for a model that is not built in")
        return CONFIG_DEFAULTS[key]

    size = _parse_size(model.size) if model.size is not None else (base.size if base is not None else None)
    return ModelSpec(
        name=model.name,
        template=pick("template"),
        checkpoint=pick("checkpoint"),
        steps=pick("steps"),
        cfg=float(pick("cfg")),
        sampler=pick("sampler"),
        scheduler=pick("scheduler"),
        size=size,
        aliases=tuple(pick("aliases")),
        description=pick("description"),
        img2img_template=pick("img2img_template"),
        inpaint_template=pick("inpaint_template"),
    )


class Catalogue:
    """Curated models by name and alias; lookups are case-insensitive.

    Built at start-up and immutable afterwards, so clashes are found once (a ``ConfigError`` that stops
    start-up) rather than as surprising lookups later.
    """

    def __init__(self, specs: Iterable[ModelSpec], *, configured: Iterable[str] = ()) -> None:
        """``configured`` names the models that came from the config file; they own their aliases.

        A built-in alias that a configured model also claims (as its name or alias) is dropped from the
        built-in instead of stopping start-up: a user naming their model ``sdxl`` should get it. Any other
        duplicate key is a clash.
        """
        specs = list(specs)
        configured_keys = {n.lower() for n in configured}
        user_claims = {
            key
            for spec in specs
            if spec.name.lower() in configured_keys
            for key in (spec.name.lower(), *(a.lower() for a in spec.aliases))
        }
        self._specs: list[ModelSpec] = []
        for spec in specs:
            from_config = spec.name.lower() in configured_keys
            seen = {spec.name.lower()}
            kept: list[str] = []
            for alias in spec.aliases:
                key = alias.lower()
                if key in seen or (not from_config and key in user_claims):
                    continue  # a duplicate, or a configured model takes this alias over from a built-in
                seen.add(key)
                kept.append(alias)
            self._specs.append(spec if tuple(kept) == spec.aliases else replace(spec, aliases=tuple(kept)))

        self._index: dict[str, ModelSpec] = {}
        # names first, so an alias that equals another model's name is reported against the alias
        for spec in self._specs:
            key = spec.name.lower()
            if key in self._index:
                raise ConfigError(f"models.{spec.name}: model name is defined twice (names are case-insensitive)")
            self._index[key] = spec
        for spec in self._specs:
            for alias in spec.aliases:
                owner = self._index.setdefault(alias.lower(), spec)
                if owner is not spec:
                    what = "the name" if owner.name.lower() == alias.lower() else "an alias"
                    raise ConfigError(
                        f"models.{spec.name}.aliases: {alias!r} is already {what} of model {owner.name!r}"
                    )

    @classmethod
    def from_config(cls, cfg: Config) -> Catalogue:
        """Built-ins plus ``[models.NAME]``; a configured model with a built-in's name overrides the keys
        it sets and keeps the built-in's values for the others.

        Also checks that ``[image] default_model`` resolves, so a typo stops start-up instead of failing
        every request that omits ``model``.
        """
        builtins = {b.name.lower(): b for b in BUILTIN_MODELS}
        configured = [spec_from_config(m, builtins.get(m.name.lower())) for m in cfg.models.values()]
        replaced = {s.name.lower() for s in configured}
        specs = [b for b in BUILTIN_MODELS if b.name.lower() not in replaced] + configured
        catalogue = cls(specs, configured=[s.name for s in configured])
        if cfg.image.default_model.lower() not in catalogue._index:
            raise ConfigError(
                f"image.default_model: {cfg.image.default_model!r} is not a curated model "
                f"(available: {', '.join(catalogue.names())})"
            )
        return catalogue

    def resolve(self, name: str) -> ModelSpec:
        """The model for a name or alias, or 404 ``image.model_not_curated`` listing what is available."""
        if not isinstance(name, str):
            raise ApiError(errors.INVALID_PARAMETER, "model must be a string", param="model")
        spec = self._index.get(name.lower())
        if spec is None:
            raise ApiError(
                errors.MODEL_NOT_CURATED,
                f"model {name!r} is not in the curated catalogue; available: {', '.join(self.names())}",
                param="model",
                details={"available": self.names(), "aliases": self.aliases()},
            )
        return spec

    def models(self) -> list[ModelSpec]:
        return list(self._specs)

    def names(self) -> list[str]:
        return [s.name for s in self._specs]

    def aliases(self) -> dict[str, str]:
        """alias -> model name, for error details and docs."""
        return {a: s.name for s in self._specs for a in s.aliases}

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __len__(self) -> int:
        return len(self._specs)

