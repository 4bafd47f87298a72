"""Workflow templates: JSON-safe rendering, the sandbox, graph checks, and ComfyUI conformance."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hal0_bridge import errors
from hal0_bridge.config import ConfigError
from hal0_bridge.errors import ApiError
from hal0_bridge.images.catalogue import BUILTIN_MODELS, ModelSpec
from hal0_bridge.images.workflows import WorkflowRenderer, build_params
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CAPTURES = Path(__file__).resolve().parents[2] / "captures"
OBJECT_INFO: dict[str, Any] = {
    **json.loads((CAPTURES / "object_info_core_subset.json").read_text()),
    **json.loads((CAPTURES / "object_info_extra_subset.json").read_text()),  # PreviewImage among them
}
EXAMPLE_GRAPH: dict[str, Any] = json.loads((CAPTURES / "prompt_request_example.json").read_text())["prompt"]

SDXL, SD15 = BUILTIN_MODELS
PLAIN = "a photo of a cat"
PLAIN_NEGATIVE = "blurry, watermark"

# A user template that differs from the built-ins in every incidental way (ids, extra output node, _meta).
USER_TEMPLATE = """{#- a user's own graph -#}
{
  "loader": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": {{ checkpoint }}}},
  "positive": {"class_type": "CLIPTextEncode", "_meta": {"title": "pos"},
               "inputs": {"clip": ["loader", 1], "text": {{ prompt }}}},
  "negative": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["loader", 1], "text": {{ negative_prompt }}}},
  "latent": {"class_type": "EmptyLatentImage",
             "inputs": {"width": {{ width }}, "height": {{ height }}, "batch_size": {{ batch_size }}}},
  "sampler": {"class_type": "KSampler", "inputs": {
      "seed": {{ seed }}, "steps": {{ steps }}, "cfg": {{ cfg }}, "sampler_name": {{ sampler }},
      "scheduler": {{ scheduler }}, "denoise": 1.0, "model": ["loader", 0], "positive": ["positive", 0],
      "negative": ["negative", 0], "latent_image": ["latent", 0]}},
  "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sampler", 0], "vae": ["loader", 2]}},
  "preview": {"class_type": "PreviewImage", "inputs": {"images": ["decode", 0]}},
  "save": {"class_type": "SaveImage", "inputs": {"filename_prefix": {{ filename_prefix }}, "images": ["decode", 0]}}
}
"""

TEMPLATES = ["sdxl-turbo", "sd-1.5", "custom"]

HOSTILE_PROMPTS = [
    "",
    '"',
    '\\"',
    "\\",
    "\\\\u0041",
    "trailing backslash \\",
    "line one\nline two\r\nthree\tfour",
    "nul \x00 byte and \x1f control",
    "emoji 🐱‍👤 🏳️‍🌈 and 中文 and é",
    "\u2028 line separator \u2029 paragraph separator \u202e rtl",
    "\ud800 lone surrogate",
    "{{ 7 * 7 }}",
    "{{ checkpoint }}",
    "{% for x in range(3) %}{{ x }}{% endfor %}",
    "{# comment #} {%- raw %}",
    "{{ ''.__class__.__mro__ }}",
    "</script><script>alert(1)</script>",
    '"}, "x": {"',
    '"}, "clip": ["99", 0], "z": "',
    '"}},"99":{"class_type":"SaveImage","inputs":{"images":["8",0]}},"y":{"a":"',
    "]]]}}}{{{[[[",
    "null",
    "NaN",
    "1e999",
    "%date:yyyy-MM-dd% ${prompt} $(rm -rf /)",
    "' OR '1'='1",
    "x" * 100_000,
]


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("templates")
    (path / "custom.json.j2").write_text(USER_TEMPLATE)
    return path


@pytest.fixture(scope="module")
def renderer(user_dir: Path) -> WorkflowRenderer:
    return WorkflowRenderer(user_dir)


@pytest.fixture
def tmp_renderer(tmp_path: Path) -> WorkflowRenderer:
    return WorkflowRenderer(tmp_path)


def params(spec: ModelSpec = SDXL, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "prompt": PLAIN,
        "negative_prompt": PLAIN_NEGATIVE,
        "seed": 42,
        "width": 1024,
        "height": 1024,
        "batch_size": 1,
        "filename_prefix": "hal0/test",
    }
    values.update(overrides)
    width, height = spec.size or (values["width"], values["height"])
    return build_params(spec, **{**values, "width": width, "height": height})


def paths_of(graph: dict[str, Any], wanted: str) -> list[tuple[str, str]]:
    return [
        (node_id, name)
        for node_id, node in graph.items()
        for name, value in node["inputs"].items()
        if value == wanted
    ]


def write(directory: Path, name: str, text: str) -> None:
    (directory / f"{name}.json.j2").write_text(text, encoding="utf-8")


def invalid(renderer: WorkflowRenderer, template: str, **overrides: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        renderer.render(template, params(**overrides))
    assert caught.value.error is errors.WORKFLOW_INVALID
    return caught.value


# --- hostile prompts ------------------------------------------------------------------------------


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("hostile", HOSTILE_PROMPTS, ids=range(len(HOSTILE_PROMPTS)))
def test_hostile_prompt_changes_only_the_text_fields_and_round_trips(
    renderer: WorkflowRenderer, template: str, hostile: str
) -> None:
    plain = renderer.render(template, params())
    attacked = renderer.render(template, params(prompt=hostile, negative_prompt=hostile[::-1]))
    prompt_paths, negative_paths = paths_of(plain, PLAIN), paths_of(plain, PLAIN_NEGATIVE)
    assert prompt_paths and negative_paths

    restored = copy.deepcopy(attacked)
    for (node_id, name), text, original in [(p, hostile, PLAIN) for p in prompt_paths] + [
        (p, hostile[::-1], PLAIN_NEGATIVE) for p in negative_paths
    ]:
        assert attacked[node_id]["inputs"][name] == text
        restored[node_id]["inputs"][name] = original
    assert restored == plain


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prompt=st.text(), negative=st.text())
def test_any_text_lands_as_exactly_one_json_string(renderer: WorkflowRenderer, prompt: str, negative: str) -> None:
    for template in TEMPLATES:
        plain = renderer.render(template, params())
        graph = renderer.render(template, params(prompt=prompt, negative_prompt=negative))
        for node_id, name in paths_of(plain, PLAIN):
            assert graph[node_id]["inputs"][name] == prompt
            graph[node_id]["inputs"][name] = PLAIN
        for node_id, name in paths_of(plain, PLAIN_NEGATIVE):
            assert graph[node_id]["inputs"][name] == negative
            graph[node_id]["inputs"][name] = PLAIN_NEGATIVE
        assert graph == plain


def test_hostile_filename_prefix_is_one_string_too(tmp_path: Path) -> None:
    write(tmp_path, "custom", USER_TEMPLATE)  # the built-ins save to temp (PreviewImage): no prefix
    prefix = '"}, "images": ["4", 0], "x": "'
    graph = WorkflowRenderer(tmp_path).render("custom", params(filename_prefix=prefix))
    assert graph["save"]["inputs"] == {"filename_prefix": prefix, "images": ["decode", 0]}


@pytest.mark.parametrize("template", ["sdxl-turbo", "sd-1.5"])
def test_builtin_graphs_end_in_a_temp_preview_so_comfyuis_disk_stays_bounded(
    renderer: WorkflowRenderer, template: str
) -> None:
    graph = renderer.render(template, params())
    outputs = {node_id: node for node_id, node in graph.items() if node["class_type"] in ("SaveImage", "PreviewImage")}
    assert outputs == {"9": {"class_type": "PreviewImage", "_meta": graph["9"]["_meta"], "inputs": {"images": ["8", 0]}}}


def test_numbers_stay_numbers(renderer: WorkflowRenderer) -> None:
    graph = renderer.render("sd-1.5", params(SD15, seed=2**64 - 1, steps=33, cfg=6.5, batch_size=3))
    sampler, latent = graph["3"]["inputs"], graph["5"]["inputs"]
    assert (sampler["seed"], sampler["steps"], sampler["cfg"]) == (2**64 - 1, 33, 6.5)
    assert type(sampler["seed"]) is int and type(sampler["steps"]) is int and type(sampler["cfg"]) is float
    assert latent == {"width": 512, "height": 512, "batch_size": 3}


def test_integer_cfg_is_rendered_as_a_float(renderer: WorkflowRenderer) -> None:
    graph = renderer.render("sdxl-turbo", params(cfg=2))
    assert type(graph["3"]["inputs"]["cfg"]) is float


# --- build_params ---------------------------------------------------------------------------------


def test_build_params_defines_exactly_the_documented_variables() -> None:
    assert set(params()) == {
        "prompt", "negative_prompt", "seed", "steps", "cfg", "sampler", "scheduler",
        "width", "height", "batch_size", "checkpoint", "filename_prefix", "model", "image", "mask", "denoise",
    }  # fmt: skip


def test_build_params_takes_steps_cfg_sampler_and_checkpoint_from_the_model() -> None:
    values = params(SD15)
    assert (values["steps"], values["cfg"], values["sampler"], values["scheduler"]) == (20, 7.0, "euler", "normal")
    assert (values["checkpoint"], values["model"]) == ("v1-5-pruned-emaonly.safetensors", "sd-1.5-pruned-emaonly")


def test_build_params_request_steps_and_cfg_override_the_model() -> None:
    values = params(SDXL, steps=2, cfg=0.0)
    assert (values["steps"], values["cfg"]) == (2, 0.0)


# --- ComfyUI conformance ----------------------------------------------------------------------------


def comfy_validation_errors(graph: dict[str, Any], *, check_checkpoint: bool = True) -> list[str]:
    """What ComfyUI 0.3.64's prompt validation would reject, judged from the captured /object_info."""
    problems: list[str] = []
    for node_id, node in graph.items():
        info = OBJECT_INFO.get(node["class_type"])
        if info is None:
            problems.append(f"{node_id}: unknown class {node['class_type']}")
            continue
        required = info["input"].get("required", {})
        declared = {**required, **info["input"].get("optional", {})}
        problems += [f"{node_id}: missing required input {name}" for name in required if name not in node["inputs"]]
        for name, value in node["inputs"].items():
            if name not in declared:
                problems.append(f"{node_id}: unknown input {name}")
                continue
            kind, options = declared[name][0], (declared[name][1] if len(declared[name]) > 1 else {})
            where = f"{node_id}.{name}={value!r}"
            if isinstance(value, list):
                source = OBJECT_INFO.get(graph[value[0]]["class_type"], {"output": []})
                outputs = source["output"]
                if value[1] >= len(outputs) or outputs[value[1]] != kind:
                    problems.append(f"{where}: link type does not match {kind}")
            elif isinstance(kind, list):
                if name == "ckpt_name" and not check_checkpoint:
                    continue
                if value not in kind:
                    problems.append(f"{where}: not in the combo list")
            elif kind == "INT":
                if type(value) is not int:
                    problems.append(f"{where}: not an INT")
                elif not options.get("min", value) <= value <= options.get("max", value):
                    problems.append(f"{where}: out of range")
            elif kind == "FLOAT":
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    problems.append(f"{where}: not a FLOAT")
                elif not options.get("min", value) <= value <= options.get("max", value):
                    problems.append(f"{where}: out of range")
            elif kind == "STRING":
                if not isinstance(value, str):
                    problems.append(f"{where}: not a STRING")
            else:
                problems.append(f"{where}: {kind} must be a link")
    if not any(OBJECT_INFO.get(n["class_type"], {}).get("output_node") for n in graph.values()):
        problems.append("no output node")
    return problems


@pytest.mark.parametrize("spec", BUILTIN_MODELS, ids=lambda s: s.name)
def test_builtin_model_graph_passes_comfyui_validation(renderer: WorkflowRenderer, spec: ModelSpec) -> None:
    graph = renderer.render(spec.template, params(spec))
    assert comfy_validation_errors(graph) == []


@pytest.mark.parametrize("spec", BUILTIN_MODELS, ids=lambda s: s.name)
def test_builtin_model_graph_at_the_parameter_limits_passes_comfyui_validation(
    renderer: WorkflowRenderer, spec: ModelSpec
) -> None:
    for extreme in (
        {"seed": 0, "steps": 1, "cfg": 0.0, "batch_size": 1},
        {"seed": 2**64 - 1, "steps": 200, "cfg": 100.0, "batch_size": 64},
    ):
        graph = renderer.render(spec.template, params(spec, **extreme))
        assert comfy_validation_errors(graph) == [], extreme


@pytest.mark.parametrize("size", [(64, 64), (4096, 4096), (1024, 576)])
def test_builtin_graph_sizes_pass_comfyui_validation(renderer: WorkflowRenderer, size: tuple[int, int]) -> None:
    graph = renderer.render("sdxl-turbo", params(SDXL, width=size[0], height=size[1]))
    assert comfy_validation_errors(graph) == []


def test_user_template_passes_comfyui_validation_except_checkpoint_membership(renderer: WorkflowRenderer) -> None:
    graph = renderer.render("custom", params(SDXL, prompt="x"))
    assert comfy_validation_errors({k: v for k, v in graph.items() if k != "preview"}, check_checkpoint=False) == []


def test_the_conformance_check_catches_bad_values(renderer: WorkflowRenderer) -> None:
    graph = renderer.render("sd-1.5", params(SD15, steps=0))
    graph["3"]["inputs"]["sampler_name"] = "no_such_sampler"
    graph["4"]["inputs"]["ckpt_name"] = "absent.safetensors"
    graph["8"]["inputs"]["samples"] = ["4", 0]
    assert len(comfy_validation_errors(graph)) == 4


@pytest.mark.parametrize("template", ["sdxl-turbo", "sd-1.5"])
def test_builtin_graph_has_the_shape_of_the_captured_comfyui_example(renderer: WorkflowRenderer, template: str) -> None:
    graph = renderer.render(template, params())

    def shape(g: dict[str, Any]) -> dict[str, Any]:
        return {
            node_id: (
                node["class_type"],
                sorted(node["inputs"]),
                {name: value for name, value in node["inputs"].items() if isinstance(value, list)},
            )
            for node_id, node in g.items()
        }

    # the captured example saves with SaveImage; ours previews into temp (the same node id and link)
    example = {**EXAMPLE_GRAPH, "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}}
    assert shape(graph) == shape(example)


# --- user templates ---------------------------------------------------------------------------------


def test_user_template_dir_overrides_a_builtin_name(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parents[3] / "templates" / "sdxl-turbo.json.j2").read_text()
    write(tmp_path, "sdxl-turbo", text.replace('"_meta": {"title": "Load checkpoint"}', '"_meta": {"title": "mine"}'))
    renderer = WorkflowRenderer(tmp_path)
    graph = renderer.render("sdxl-turbo", params())
    assert graph["4"]["_meta"]["title"] == "mine"
    assert renderer.origin("sdxl-turbo") == "user"


def test_builtins_are_still_served_when_the_user_dir_lacks_the_name(renderer: WorkflowRenderer) -> None:
    graph = renderer.render("sd-1.5", params(SD15))
    assert graph["4"]["inputs"]["ckpt_name"] == "v1-5-pruned-emaonly.safetensors"
    assert renderer.origin("sd-1.5") == "builtin"


def test_template_may_be_named_with_its_suffix(renderer: WorkflowRenderer) -> None:
    assert renderer.render("custom.json.j2", params()) == renderer.render("custom", params())


def test_templates_lists_user_and_builtin_names(renderer: WorkflowRenderer) -> None:
    assert {"sdxl-turbo", "sd-1.5", "custom"} <= set(renderer.templates())


def test_edited_user_template_is_picked_up_without_a_restart(tmp_path: Path) -> None:
    write(tmp_path, "live", USER_TEMPLATE)
    renderer = WorkflowRenderer(tmp_path)
    assert renderer.render("live", params())["save"]["inputs"]["filename_prefix"] == "hal0/test"
    write(tmp_path, "live", USER_TEMPLATE.replace("{{ filename_prefix }}", '"edited"'))
    stat = (tmp_path / "live.json.j2").stat()
    os.utime(tmp_path / "live.json.j2", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert renderer.render("live", params())["save"]["inputs"]["filename_prefix"] == "edited"


def test_template_dir_that_does_not_exist_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"image\.template_dir: not a directory"):
        WorkflowRenderer(tmp_path / "absent")


# --- the sandbox ------------------------------------------------------------------------------------

SANDBOX_ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ prompt.__class__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ self._TemplateReference__context }}",
    "{{ ''.format.__self__ }}",
    "{{ '{0.__class__}'.format(prompt) }}",
    "{% set l = [] %}{{ l.append(1) }}",
    "{% set d = {} %}{{ d.update({'a': 1}) }}",
    "{{ 'a' * 100000000 }}",
    "{{ 10 ** 100000 }}",
]


@pytest.mark.parametrize("body", SANDBOX_ESCAPES)
def test_sandbox_escape_in_a_user_template_is_workflow_invalid(
    tmp_renderer: WorkflowRenderer, tmp_path: Path, body: str
) -> None:
    write(tmp_path, "evil", '{"9": {"class_type": "SaveImage", "inputs": {"x": ' + body + "}}}")
    err = invalid(tmp_renderer, "evil")
    assert err.status == 422
    assert err.details["reason"] in {"sandbox_violation", "undefined"}
    assert "evil" in err.message


def test_huge_range_in_a_user_template_is_workflow_invalid(tmp_renderer: WorkflowRenderer, tmp_path: Path) -> None:
    write(tmp_path, "huge", "{{ range(10 ** 9) | list }}")
    assert "Range too big" in invalid(tmp_renderer, "huge").message


# --- broken templates -------------------------------------------------------------------------------

NODE_SAVE = '"9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x", "images": ["8", 0]}}'
NODE_DECODE = '"8": {"class_type": "VAEDecode", "inputs": {}}'
SAVE_WITH_LINK = '{' + NODE_DECODE + ', "9": {"class_type": "SaveImage", "inputs": {"images": %s}}}'


@pytest.mark.parametrize(
    ("body", "reason", "needle"),
    [
        ("{% if %}", "syntax_error", "syntax error at line 1"),
        ('{"a": 1,\n  {{ prompt }\n}', "syntax_error", "syntax error at line 2"),
        ("{% for x in y %}", "syntax_error", "syntax error"),
        ('{"9": }', "invalid_json", "not valid JSON"),
        ('{"6": {"class_type": "X", "inputs": {"text": "{{ prompt }}"}}}', "invalid_json", "not valid JSON"),
        ("{{ nope }}", "undefined", "'nope' is undefined"),
        ("{{ prompt.nope }}", "undefined", "nope"),
        ("{{ 1 / 0 }}", "render_error", "ZeroDivisionError"),
        ("{{ cfg * 1e308 * 10 }}", "render_error", "ValueError"),
        ("[]", "not_a_graph", "non-empty JSON object"),
        ("{}", "not_a_graph", "non-empty JSON object"),
        ('"just a string"', "not_a_graph", "non-empty JSON object"),
        ('{"9": []}', "bad_node", "'9' is not an object"),
        ('{"9": {"inputs": {}}}', "bad_node", "'9' has no class_type"),
        ('{"9": {"class_type": "", "inputs": {}}}', "bad_node", "'9' has no class_type"),
        ('{"9": {"class_type": "SaveImage"}}', "bad_node", "'9' has no inputs object"),
        ('{"9": {"class_type": "SaveImage", "inputs": []}}', "bad_node", "'9' has no inputs object"),
        ("{" + NODE_SAVE + "}", "dangling_link", "links to missing node '8'"),
        *(
            (SAVE_WITH_LINK % link, "bad_link", "not a link")
            for link in ("[8, 0]", '["8"]', '["8", -1]', '["8", true]', '["8", 0, 1]')
        ),
        ('{"8": {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0]}}, ' + NODE_SAVE + "}", "cycle", "cycle"),
        (
            '{"7": {"class_type": "A", "inputs": {"x": ["8", 0]}}, "8": {"class_type": "B", "inputs": {"y": ["7", 0]}}, '
            + NODE_SAVE
            + "}",
            "cycle",
            "cycle",
        ),
        ('{"8": {"class_type": "VAEDecode", "inputs": {}}}', "no_output", "no output node"),
    ],
)
def test_broken_template_is_workflow_invalid_with_a_useful_message(
    tmp_renderer: WorkflowRenderer, tmp_path: Path, body: str, reason: str, needle: str
) -> None:
    write(tmp_path, "broken", body)
    err = invalid(tmp_renderer, "broken")
    assert err.status == 422
    assert err.message.startswith("workflow template 'broken': ")
    assert needle in err.message
    assert err.details["template"] == "broken"
    assert err.details["reason"] == reason


def test_invalid_json_error_points_at_the_spot(tmp_renderer: WorkflowRenderer, tmp_path: Path) -> None:
    write(tmp_path, "quoted", '{\n  "6": {"class_type": "CLIPTextEncode",\n    "inputs": {"text": "{{ prompt }}"}}}')
    err = invalid(tmp_renderer, "quoted")
    assert err.details["line"] == 3
    assert PLAIN in err.details["excerpt"]


def test_dangling_link_error_names_the_node_and_input(tmp_renderer: WorkflowRenderer, tmp_path: Path) -> None:
    write(tmp_path, "dangling", "{" + NODE_SAVE + "}")
    err = invalid(tmp_renderer, "dangling")
    assert (err.details["node"], err.details["input"]) == ("9", "images")


def test_missing_template_is_workflow_invalid_listing_available_templates(renderer: WorkflowRenderer) -> None:
    err = invalid(renderer, "no-such-template")
    assert err.details["reason"] == "not_found"
    assert "no-such-template.json.j2" in err.message
    assert {"sdxl-turbo", "sd-1.5", "custom"} <= set(err.details["available"])


@pytest.mark.parametrize("name", ["../templates/sdxl-turbo", "../../etc/passwd", "..", "sub/../../x"])
def test_template_name_cannot_leave_the_template_folders(renderer: WorkflowRenderer, name: str) -> None:
    assert invalid(renderer, name).details["reason"] == "not_found"


def test_missing_included_template_is_named(tmp_renderer: WorkflowRenderer, tmp_path: Path) -> None:
    write(tmp_path, "includer", '{% include "part.json.j2" %}')
    err = invalid(tmp_renderer, "includer")
    assert "template not found: part.json.j2" in err.message


def test_template_that_is_not_utf8_is_workflow_invalid(tmp_renderer: WorkflowRenderer, tmp_path: Path) -> None:
    (tmp_path / "latin1.json.j2").write_bytes(b'{"9": "\xe9\xff"}')
    assert invalid(tmp_renderer, "latin1").details["reason"] == "encoding"


def test_include_of_a_user_partial_renders_json_safely(tmp_renderer: WorkflowRenderer, tmp_path: Path) -> None:
    (tmp_path / "save.part.j2").write_text(
        '"9": {"class_type": "SaveImage", "inputs": {"filename_prefix": {{ prompt }}, "images": ["8", 0]}}'
    )
    write(tmp_path, "whole", '{"8": {"class_type": "VAEDecode", "inputs": {}}, {% include "save.part.j2" %}}')
    graph = tmp_renderer.render("whole", params(prompt='"}}, "x": {"'))
    assert graph["9"]["inputs"]["filename_prefix"] == '"}}, "x": {"'


# --- check ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", BUILTIN_MODELS, ids=lambda s: s.name)
def test_check_accepts_every_builtin_template(renderer: WorkflowRenderer, spec: ModelSpec) -> None:
    renderer.check(spec.template, spec)


def test_check_without_a_spec_uses_sample_parameters(renderer: WorkflowRenderer) -> None:
    renderer.check("custom")


def test_check_rejects_a_template_that_ignores_the_prompt(tmp_renderer: WorkflowRenderer, tmp_path: Path) -> None:
    write(tmp_path, "deaf", USER_TEMPLATE.replace('"text": {{ prompt }}', '"text": "a fixed prompt"'))
    with pytest.raises(ApiError) as caught:
        tmp_renderer.check("deaf")
    assert caught.value.details["reason"] == "prompt_unused"


def test_check_rejects_a_broken_template(tmp_renderer: WorkflowRenderer, tmp_path: Path) -> None:
    write(tmp_path, "broken", "{% if %}")
    with pytest.raises(ApiError) as caught:
        tmp_renderer.check("broken")
    assert caught.value.error is errors.WORKFLOW_INVALID


def test_check_accepts_a_template_that_transforms_the_prompt(tmp_renderer: WorkflowRenderer, tmp_path: Path) -> None:
    write(tmp_path, "shouty", USER_TEMPLATE.replace("{{ prompt }}", '{{ "masterpiece, " ~ prompt | upper }}'))
    tmp_renderer.check("shouty")


def test_check_models_accepts_the_builtin_catalogue(renderer: WorkflowRenderer) -> None:
    renderer.check_models(BUILTIN_MODELS)


def test_check_models_names_the_model_whose_template_is_broken(renderer: WorkflowRenderer) -> None:
    broken = ModelSpec("mine", "no-such-template", "x.safetensors", 20, 7.0, "euler", "normal", None)
    with pytest.raises(ConfigError, match=r"models\.mine\.template: workflow template 'no-such-template': template not"):
        renderer.check_models([*BUILTIN_MODELS, broken])
