"""Jinja2-templated ComfyUI workflows (API format), rendered so no prompt can change the graph.

A template is the JSON body of ComfyUI's ``POST /prompt`` ``"prompt"`` object with ``{{ variables }}``
in it. Every ``{{ expression }}`` is JSON-encoded on output (the environment's ``finalize``), so
``"text": {{ prompt }}`` becomes exactly one JSON string literal whatever the prompt holds (quotes,
backslashes, newlines, ``{{ }}``, ``"}, "x": {"``), and numbers stay numbers. Templates run in Jinja's
immutable sandbox: a template from the user's folder can shape the graph but not reach Python.

The rendered text is parsed and checked as a ComfyUI API graph before anything is sent, so a broken
template is a 422 ``image.workflow_invalid`` naming the template, never a GPU switch followed by a
ComfyUI 400.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from jinja2 import BaseLoader, StrictUndefined, TemplateError, TemplateNotFound, TemplateSyntaxError
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.loaders import split_template_path
from jinja2.runtime import Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .. import errors
from ..config import ConfigError
from ..errors import ApiError
from .catalogue import ModelSpec

TEMPLATE_SUFFIX = ".json.j2"
BUILTIN_PACKAGE = "hal0_bridge.templates"

# Node classes whose presence makes ComfyUI run a graph (ComfyUI answers `prompt_no_outputs` otherwise).
OUTPUT_NODES: frozenset[str] = frozenset(
    {"SaveImage", "PreviewImage", "SaveImageWebsocket", "SaveAnimatedWEBP", "SaveAnimatedPNG"}
)

# Sandbox bounds on the two operators that can build huge values from tiny templates.
MAX_REPEAT_LENGTH = 1_000_000  # items or characters produced by `*` on a sequence
MAX_POWER_BITS = 4096  # bit size of an integer produced by `**`

SAMPLE_PROMPTS = ('hal0 sample "quoted" {{ braces }} \\ end', "Other Sample Prompt\n{% raw %}")
SAMPLE_SIZE = (512, 512)
SAMPLE_IMAGE = "hal0/check-image.png [temp]"
SAMPLE_MASK = "hal0/check-mask.png [temp]"


def build_params(
    spec: ModelSpec,
    *,
    prompt: str,
    negative_prompt: str = "",
    seed: int,
    steps: int | None = None,
    cfg: float | None = None,
    width: int,
    height: int,
    batch_size: int = 1,
    filename_prefix: str = "hal0",
    image: str = "",
    mask: str = "",
    denoise: float = 1.0,
) -> dict[str, Any]:
    """The variables every template sees; ``steps``/``cfg`` left as None take the model's defaults.

    ``image``/``mask`` are the LoadImage names of an edit's uploads (``""`` for a generation) and
    ``denoise`` its strength (1.0 for a generation).
    """
    return {
        "prompt": prompt,
        "negative_prompt": negative_prompt,
        "seed": seed,
        "steps": spec.steps if steps is None else steps,
        "cfg": float(spec.cfg if cfg is None else cfg),
        "sampler": spec.sampler,
        "scheduler": spec.scheduler,
        "width": width,
        "height": height,
        "batch_size": batch_size,
        "checkpoint": spec.checkpoint,
        "filename_prefix": filename_prefix,
        "model": spec.name,
        "image": image,
        "mask": mask,
        "denoise": float(denoise),
    }


def template_filename(template: str) -> str:
    """Config names templates without the suffix (``sdxl-turbo``); a full file name works too."""
    return template if template.endswith(".j2") else template + TEMPLATE_SUFFIX


def _json_finalize(value: Any) -> str:
    """Every ``{{ }}`` output becomes one JSON value; undefined values fail instead of printing ''."""
    if isinstance(value, Undefined):
        str(value)  # StrictUndefined raises UndefinedError (or SecurityError for a blocked attribute)
    return json.dumps(value, ensure_ascii=True, allow_nan=False)


class _HalSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, plus bounds on ``*`` and ``**`` so a template cannot exhaust memory."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(count, int):
                    if len(seq) * count > MAX_REPEAT_LENGTH:
                        raise SecurityError(f"`*` would build a sequence longer than {MAX_REPEAT_LENGTH}")
            return operator.mul(left, right)
        if operator_name == "**":
            if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0:
                if abs(left).bit_length() * right > MAX_POWER_BITS:
                    raise SecurityError(f"`**` would build an integer over {MAX_POWER_BITS} bits")
            return operator.pow(left, right)
        return super().call_binop(context, operator_name, left, right)


class _TemplateLoader(BaseLoader):
    """The user's template folder first, then the packaged templates (works installed and editable)."""

    def __init__(self, roots: list[tuple[str, Traversable]]) -> None:
        self.roots = roots
        self.origins: dict[str, str] = {}

    def _find(self, name: str) -> tuple[str, Traversable] | None:
        pieces = split_template_path(name)  # rejects ".." with TemplateNotFound
        for origin, root in self.roots:
            node = root
            for piece in pieces:
                node = node / piece
            if node.is_file():
                return origin, node
        return None

    def get_source(self, environment: Any, template: str) -> tuple[str, str | None, Callable[[], bool]]:
        found = self._find(template)
        if found is None:
            raise TemplateNotFound(template)
        origin, node = found
        self.origins[template] = origin
        source = node.read_text(encoding="utf-8")
        if isinstance(node, Path):
            mtime = node.stat().st_mtime
            path = node

            def uptodate() -> bool:
                # templates in the user's folder may be edited while the daemon runs
                try:
                    return path.stat().st_mtime == mtime and self._find(template) == found
                except OSError:
                    return False

            return source, str(node), uptodate
        return source, f"{origin}:{template}", lambda: self._find(template) == found

    def list_templates(self) -> list[str]:
        names: set[str] = set()
        for _, root in self.roots:
            try:
                names.update(n.name for n in root.iterdir() if n.is_file() and n.name.endswith(".j2"))
            except OSError:
                continue  # a user folder removed while running: list what is left
        return sorted(names)


class WorkflowRenderer:
    """Renders a template with request parameters into a checked ComfyUI API graph."""

    def __init__(
        self, template_dir: Path | None = None, *, output_nodes: frozenset[str] = OUTPUT_NODES
    ) -> None:
        roots: list[tuple[str, Traversable]] = []
        if template_dir is not None:
            template_dir = Path(template_dir).expanduser()
            if not template_dir.is_dir():
                raise ConfigError(f"image.template_dir: not a directory: {template_dir}")
            roots.append(("user", template_dir))
        roots.append(("builtin", files(BUILTIN_PACKAGE)))
        self._loader = _TemplateLoader(roots)
        self._output_nodes = output_nodes
        self._env = _HalSandbox(
            loader=self._loader,
            undefined=StrictUndefined,
            autoescape=False,
            finalize=_json_finalize,
            keep_trailing_newline=True,
            auto_reload=True,
        )

    def templates(self) -> list[str]:
        """Template names available (user folder and built-in), without the suffix."""
        return [n.removesuffix(TEMPLATE_SUFFIX) for n in self._loader.list_templates()]

    def origin(self, template: str) -> str | None:
        """``user`` or ``builtin``: where ``template`` was last loaded from (None before its first load)."""
        return self._loader.origins.get(template_filename(template))

    def render(self, template: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """The graph for ``params``, or 422 ``image.workflow_invalid`` with the reason and template name."""
        filename = template_filename(template)
        text = self._render_text(template, filename, params)
        try:
            graph: dict[str, Any] = json.loads(text)
        except json.JSONDecodeError as err:
            start = max(err.pos - 40, 0)
            raise _invalid(
                template,
                f"rendered output is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}",
                "invalid_json",
                line=err.lineno,
                column=err.colno,
                excerpt=text[start : err.pos + 40],
            ) from None
        self._validate(template, graph)
        return graph

    def check(self, template: str, spec: ModelSpec | None = None) -> None:
        """Render with sample parameters (start-up fail-fast); also insists the graph depends on the prompt.

        Two hostile sample prompts are rendered: both must give valid graphs, and the graphs must differ,
        or the template ignores ``{{ prompt }}`` (however it transforms it).
        """
        spec = spec or ModelSpec(
            name="sample",
            template=template,
            checkpoint="sample.safetensors",
            steps=20,
            cfg=7.0,
            sampler="euler",
            scheduler="normal",
            size=None,
        )
        width, height = spec.size or SAMPLE_SIZE
        graphs = [
            self.render(
                template,
                build_params(
                    spec,
                    prompt=prompt,
                    negative_prompt="sample negative",
                    seed=1,
                    width=width,
                    height=height,
                    batch_size=1,
                    filename_prefix="hal0/check",
                    image=SAMPLE_IMAGE,
                    mask=SAMPLE_MASK,
                    denoise=0.75,
                ),
            )
            for prompt in SAMPLE_PROMPTS
        ]
        if graphs[0] == graphs[1]:
            raise _invalid(template, "the graph never uses {{ prompt }}", "prompt_unused")

    def check_models(self, specs: Iterable[ModelSpec]) -> None:
        """:meth:`check` every model's template; a failure is a ``ConfigError`` naming the model's key."""
        for spec in specs:
            for key in ("template", "img2img_template", "inpaint_template"):
                template = getattr(spec, key)
                if template is None:
                    continue
                try:
                    self.check(template, spec)
                except ApiError as err:
                    raise ConfigError(f"models.{spec.name}.{key}: {err.message}") from None

    def _render_text(self, template: str, filename: str, params: Mapping[str, Any]) -> str:
        try:
            return self._env.get_template(filename).render(dict(params))
        except TemplateNotFound as err:
            missing = err.name if err.name != filename else filename
            raise _invalid(
                template,
                f"template not found: {missing}",
                "not_found",
                available=self.templates(),
            ) from None
        except TemplateSyntaxError as err:
            raise _invalid(
                template, f"template syntax error at line {err.lineno}: {err.message}", "syntax_error", line=err.lineno
            ) from None
        except SecurityError as err:
            raise _invalid(template, f"template tried an unsafe operation: {err}", "sandbox_violation") from None
        except UndefinedError as err:
            raise _invalid(template, f"template uses an undefined variable: {err}", "undefined") from None
        except TemplateError as err:
            raise _invalid(template, f"template error: {err}", "template_error") from None
        except UnicodeDecodeError:
            raise _invalid(template, "template file is not UTF-8 text", "encoding") from None
        except Exception as err:  # noqa: BLE001 - anything a template expression can raise is the template's fault
            raise _invalid(
                template, f"template failed while rendering: {type(err).__name__}: {err}", "render_error"
            ) from None

    def _validate(self, template: str, graph: Any) -> None:
        """The shape ComfyUI's ``POST /prompt`` accepts; catches what would be a 400 after a GPU switch."""
        if not isinstance(graph, dict) or not graph:
            raise _invalid(template, "rendered graph must be a non-empty JSON object of nodes", "not_a_graph")
        for node_id, node in graph.items():
            if not isinstance(node, dict):
                raise _invalid(template, f"node {node_id!r} is not an object", "bad_node", node=node_id)
            class_type = node.get("class_type")
            if not isinstance(class_type, str) or not class_type:
                raise _invalid(template, f"node {node_id!r} has no class_type", "bad_node", node=node_id)
            inputs = node.get("inputs")
            if not isinstance(inputs, dict):
                raise _invalid(template, f"node {node_id!r} has no inputs object", "bad_node", node=node_id)
            for name, value in inputs.items():
                if not isinstance(value, list):
                    continue
                # in ComfyUI's API format every list input is a link [source node id, output index]
                if (
                    len(value) != 2
                    or not isinstance(value[0], str)
                    or not isinstance(value[1], int)
                    or isinstance(value[1], bool)
                    or value[1] < 0
                ):
                    raise _invalid(
                        template,
                        f"node {node_id!r} input {name!r} is not a link [node_id, output_index]: {value!r}",
                        "bad_link",
                        node=node_id,
                        input=name,
                    )
                if value[0] not in graph:
                    raise _invalid(
                        template,
                        f"node {node_id!r} input {name!r} links to missing node {value[0]!r}",
                        "dangling_link",
                        node=node_id,
                        input=name,
                    )
        cycle = _find_cycle(graph)
        if cycle:
            raise _invalid(template, f"graph has a cycle through node {cycle!r}", "cycle", node=cycle)
        if not any(node["class_type"] in self._output_nodes for node in graph.values()):
            raise _invalid(
                template,
                f"graph has no output node (one of {', '.join(sorted(self._output_nodes))})",
                "no_output",
            )


def _invalid(template: str, message: str, reason: str, **details: Any) -> ApiError:
    return ApiError(
        errors.WORKFLOW_INVALID,
        f"workflow template {template!r}: {message}",
        details={"template": template, "reason": reason, **details},
    )


def _links(node: dict[str, Any]) -> Iterator[str]:
    for value in node["inputs"].values():
        if isinstance(value, list):
            yield value[0]


def _find_cycle(graph: dict[str, Any]) -> str | None:
    """A node on a dependency cycle, or None. Iterative, so a long chain cannot hit the recursion limit."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for root in graph:
        if root in state:
            continue
        stack: list[tuple[str, Iterator[str]]] = [(root, _links(graph[root]))]
        state[root] = 1
        while stack:
            node_id, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node_id] = 2
                stack.pop()
            elif state.get(child) == 1:
                return child
            elif child not in state:
                state[child] = 1
                stack.append((child, _links(graph[child])))
    return None

