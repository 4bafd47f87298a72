"""The curated image catalogue: built-ins, aliases, config overrides, and its errors."""

from __future__ import annotations

from typing import Any

import pytest
from hal0_bridge import errors
from hal0_bridge.config import ConfigError, build
from hal0_bridge.errors import ApiError
from hal0_bridge.images.catalogue import BUILTIN_MODELS, Catalogue, ModelSpec


def catalogue(models: dict[str, Any] | None = None, **image: Any) -> Catalogue:
    raw: dict[str, Any] = {"models": models or {}}
    if image:
        raw["image"] = image
    return Catalogue.from_config(build(raw))


def model(**overrides: Any) -> dict[str, Any]:
    return {"template": "sd-1.5", "checkpoint": "custom.safetensors", **overrides}


def test_default_catalogue_holds_exactly_the_two_builtins() -> None:
    assert catalogue().names() == ["sdxl-turbo", "sd-1.5-pruned-emaonly"]


def test_sdxl_turbo_builtin_has_the_documented_defaults() -> None:
    spec = catalogue().resolve("sdxl-turbo")
    assert (spec.template, spec.checkpoint, spec.steps, spec.cfg, spec.sampler, spec.scheduler, spec.size) == (
        "sdxl-turbo",
        "sd_xl_turbo_1.0_fp16.safetensors",
        4,
        1.0,
        "euler_ancestral",
        "sgm_uniform",
        None,
    )


def test_sd15_builtin_has_the_documented_defaults() -> None:
    spec = catalogue().resolve("sd-1.5-pruned-emaonly")
    assert (spec.template, spec.checkpoint, spec.steps, spec.cfg, spec.sampler, spec.scheduler, spec.size) == (
        "sd-1.5",
        "v1-5-pruned-emaonly.safetensors",
        20,
        7.0,
        "euler",
        "normal",
        (512, 512),
    )


@pytest.mark.parametrize(
    ("alias", "name"),
    [("sdxl", "sdxl-turbo"), ("sd-1.5", "sd-1.5-pruned-emaonly"), ("sd15", "sd-1.5-pruned-emaonly")],
)
def test_builtin_aliases_resolve_to_their_model(alias: str, name: str) -> None:
    assert catalogue().resolve(alias).name == name


@pytest.mark.parametrize("spelling", ["SDXL-Turbo", "SDXL", "Sd15", "SD-1.5-PRUNED-EMAONLY"])
def test_names_and_aliases_are_case_insensitive(spelling: str) -> None:
    assert catalogue().resolve(spelling) in BUILTIN_MODELS


def test_models_returns_specs_not_aliases() -> None:
    specs = catalogue().models()
    assert all(isinstance(s, ModelSpec) for s in specs)
    assert len(specs) == 2


def test_config_model_is_added_after_the_builtins() -> None:
    cat = catalogue({"flux-lite": model(steps=8, cfg=3.5, sampler="dpmpp_2m", scheduler="karras", size="768x512")})
    spec = cat.resolve("flux-lite")
    assert cat.names() == ["sdxl-turbo", "sd-1.5-pruned-emaonly", "flux-lite"]
    assert (spec.template, spec.checkpoint, spec.steps, spec.cfg, spec.sampler, spec.scheduler, spec.size) == (
        "sd-1.5",
        "custom.safetensors",
        8,
        3.5,
        "dpmpp_2m",
        "karras",
        (768, 512),
    )


def test_config_model_without_size_uses_the_default_size() -> None:
    assert catalogue({"mine": model()}).resolve("mine").size is None


def test_config_aliases_resolve() -> None:
    cat = catalogue({"mine": model(aliases=["my-model", "MM"])})
    assert cat.resolve("mm").name == "mine"
    assert cat.resolve("my-model").name == "mine"


def test_config_model_with_a_builtin_name_overrides_only_the_keys_it_sets() -> None:
    cat = catalogue({"sdxl-turbo": {"checkpoint": "other.safetensors", "steps": 6}})
    spec = cat.resolve("sdxl-turbo")
    assert (spec.checkpoint, spec.steps) == ("other.safetensors", 6)
    # everything else is still the built-in's: template, cfg 1.0, euler_ancestral/sgm_uniform, aliases
    assert (spec.template, spec.cfg, spec.sampler, spec.scheduler) == ("sdxl-turbo", 1.0, "euler_ancestral", "sgm_uniform")
    assert cat.resolve("sdxl") is spec
    assert cat.names().count("sdxl-turbo") == 1


def test_overriding_a_builtin_keeps_its_own_size() -> None:
    assert catalogue({"sd-1.5-pruned-emaonly": {"steps": 30}}).resolve("sd15").size == (512, 512)


def test_new_config_model_gets_the_catalogue_defaults_for_what_it_leaves_out() -> None:
    spec = catalogue({"mine": model()}).resolve("mine")
    assert (spec.steps, spec.cfg, spec.sampler, spec.scheduler, spec.aliases) == (20, 7.0, "euler", "normal", ())


@pytest.mark.parametrize("missing", ["template", "checkpoint"])
def test_new_config_model_needs_template_and_checkpoint(missing: str) -> None:
    body = model()
    del body[missing]
    with pytest.raises(ConfigError, match=rf"^models\.mine\.{missing}: required"):
        catalogue({"mine": body})


def test_replacing_a_builtin_ignores_the_case_of_its_name() -> None:
    cat = catalogue({"SDXL-Turbo": model()})
    assert [n.lower() for n in cat.names()].count("sdxl-turbo") == 1
    assert cat.resolve("sdxl-turbo").checkpoint == "custom.safetensors"


def test_config_model_named_like_a_builtin_alias_takes_that_alias_over() -> None:
    cat = catalogue({"sdxl": model()})
    assert cat.resolve("sdxl").name == "sdxl"
    assert "sdxl" not in cat.resolve("sdxl-turbo").aliases
    assert cat.resolve("sdxl-turbo").name == "sdxl-turbo"


def test_unknown_model_is_a_404_model_not_curated_listing_what_is_available() -> None:
    with pytest.raises(ApiError) as caught:
        catalogue().resolve("dall-e-3")
    err = caught.value
    assert err.error is errors.MODEL_NOT_CURATED
    assert err.status == 404
    assert err.param == "model"
    assert err.details["available"] == ["sdxl-turbo", "sd-1.5-pruned-emaonly"]
    assert "dall-e-3" in err.message
    envelope = err.envelope()["error"]
    assert envelope["code"] == "image.model_not_curated"
    assert envelope["param"] == "model"


def test_unknown_model_error_lists_aliases_too() -> None:
    with pytest.raises(ApiError) as caught:
        catalogue().resolve("nope")
    assert caught.value.details["aliases"]["sdxl"] == "sdxl-turbo"


def test_non_string_model_name_is_a_422_not_a_crash() -> None:
    with pytest.raises(ApiError) as caught:
        catalogue().resolve(42)  # type: ignore[arg-type]
    assert caught.value.error is errors.INVALID_PARAMETER
    assert caught.value.param == "model"


def test_two_config_models_sharing_an_alias_is_a_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"models\.b\.aliases: 'Shared' is already an alias of model 'a'"):
        catalogue({"a": model(aliases=["shared"]), "b": model(aliases=["Shared"])})


def test_config_alias_equal_to_another_models_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"models\.mine\.aliases: 'sdxl-turbo' is already the name of model"):
        catalogue({"mine": model(aliases=["sdxl-turbo"])})


def test_config_alias_equal_to_another_config_models_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"models\.b\.aliases: 'a' is already the name of model 'a'"):
        catalogue({"a": model(), "b": model(aliases=["a"])})


def test_config_model_names_differing_only_in_case_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"models\.Mine: model name is defined twice"):
        catalogue({"mine": model(), "Mine": model()})


def test_alias_repeating_the_models_own_name_is_harmless() -> None:
    cat = catalogue({"mine": model(aliases=["MINE", "m", "M"])})
    assert cat.resolve("mine").aliases == ("m",)


def test_default_model_that_is_not_curated_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"image\.default_model: 'nope' is not a curated model"):
        catalogue(default_model="nope")


def test_default_model_may_be_an_alias() -> None:
    assert catalogue(default_model="SD15").resolve("sd15").name == "sd-1.5-pruned-emaonly"
