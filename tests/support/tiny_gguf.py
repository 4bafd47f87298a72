"""A tiny random-weight llama-arch GGUF model for the real llama-server tests, made and cached here.

No model can be downloaded on these machines, and a real llama-server only needs a model that loads,
tokenizes and samples: the llama architecture at toy size (F32, n_embd 64, 2 layers, 4 heads, ffn 128)
with a gpt2 (byte-level BPE) tokenizer. That tokenizer needs the 256 byte tokens *and* merges (llama.cpp
refuses a BPE vocabulary without merges), control tokens ``<|endoftext|>`` (bos) and ``<|im_end|>``
(eos), and a ChatML template so ``/v1/chat/completions`` renders a prompt.

The output projection is shaped so that every completion runs to ``max_tokens`` with printable ASCII:
rows for printable tokens are random and large, all other rows (control tokens, other bytes) are zero.
For any hidden state the best printable logit is then far above 0 (the maximum of ~100 random
projections), so sampling's min-p/top-k cut never keeps the end token, and a drain test can make a
request last as long as it likes (``finish_reason: "length"``).

Deterministic: weights come from a seeded generator; the file is cached under
``~/.cache/hal0-bridge/models/`` keyed by a hash of the parameters (``HAL0_MODEL_CACHE`` overrides the
folder), written to a temp file and renamed into place, so concurrent test runs never see half a file.

    python -m tests.support.tiny_gguf      # prints the cached model's path, writing it if needed
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

GENERATOR_VERSION = 1  # bump when the file this writes changes for the same parameters
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# A few merges, in byte-level form (U+0120 'Ġ' is the space byte): BPE needs at least one.
MERGES = ("t h", "e r", "i n", "a n", "o n", "Ġ t", "Ġ a", "th e")
CONTROL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


@dataclass(frozen=True, slots=True)
class TinyModelParams:
    """Everything that decides the file's bytes; its hash names the cached file."""

    n_embd: int = 64
    n_layer: int = 2
    n_head: int = 4
    n_ff: int = 128
    n_ctx_train: int = 8192  # >= the -c the tests pass, so llama-server does not warn about it
    seed: int = 20240601
    output_scale: float = 4.0  # size of the printable rows of output.weight (see the module docstring)
    name: str = "hal0-tiny"

    def key(self) -> str:
        raw = json.dumps({"v": GENERATOR_VERSION, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


def byte_tokens() -> list[str]:
    """GPT-2's byte-to-unicode map: each of the 256 bytes as the printable character BPE vocabularies use."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def vocabulary() -> tuple[list[str], list[int], list[bool]]:
    """Tokens, their GGUF token types, and whether each decodes to printable ASCII text."""
    bytes_ = byte_tokens()
    decode = {ch: b for b, ch in enumerate(bytes_)}
    tokens = list(bytes_)
    for merge in MERGES:
        left, right = merge.split(" ")
        tokens.append(left + right)
    types = [int(gguf.TokenType.NORMAL)] * len(tokens)
    printable = [all(0x20 <= decode[ch] <= 0x7E for ch in tok) for tok in tokens]
    for control in CONTROL_TOKENS:
        tokens.append(control)
        types.append(int(gguf.TokenType.CONTROL))
        printable.append(False)
    return tokens, types, printable


def write_model(path: Path, params: TinyModelParams) -> None:
    """Write the GGUF file for ``params`` at ``path`` (not atomic: see :func:`tiny_model_path`)."""
    tokens, types, printable = vocabulary()
    n_vocab, d, ff = len(tokens), params.n_embd, params.n_ff
    rng = np.random.default_rng(params.seed)

    def rand(*shape: int, scale: float = 0.02) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name(params.name)
    writer.add_file_type(int(gguf.LlamaFileType.ALL_F32))
    writer.add_vocab_size(n_vocab)
    writer.add_context_length(params.n_ctx_train)
    writer.add_embedding_length(d)
    writer.add_block_count(params.n_layer)
    writer.add_feed_forward_length(ff)
    writer.add_head_count(params.n_head)
    writer.add_head_count_kv(params.n_head)
    writer.add_rope_dimension_count(d // params.n_head)
    writer.add_layer_norm_rms_eps(1e-5)

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(list(MERGES))
    writer.add_bos_token_id(tokens.index("<|endoftext|>"))
    writer.add_eos_token_id(tokens.index("<|im_end|>"))
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHATML_TEMPLATE)

    # numpy shapes are ggml's ne reversed: token_embd is ne {n_embd, n_vocab}, so (n_vocab, n_embd).
    writer.add_tensor("token_embd.weight", rand(n_vocab, d, scale=1.0))
    for i in range(params.n_layer):
        blk = f"blk.{i}"
        writer.add_tensor(f"{blk}.attn_norm.weight", np.ones(d, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"{blk}.{name}.weight", rand(d, d))
        writer.add_tensor(f"{blk}.ffn_norm.weight", np.ones(d, dtype=np.float32))
        writer.add_tensor(f"{blk}.ffn_gate.weight", rand(ff, d))
        writer.add_tensor(f"{blk}.ffn_up.weight", rand(ff, d))
        writer.add_tensor(f"{blk}.ffn_down.weight", rand(d, ff))
    writer.add_tensor("output_norm.weight", np.ones(d, dtype=np.float32))
    output = rand(n_vocab, d, scale=params.output_scale)
    output[~np.array(printable)] = 0.0
    writer.add_tensor("output.weight", output)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def cache_dir() -> Path:
    if folder := os.environ.get("HAL0_MODEL_CACHE"):
        return Path(folder)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hal0-bridge" / "models"


def tiny_model_path(params: TinyModelParams | None = None, folder: Path | None = None) -> Path:
    """The cached model for ``params`` (defaults: the tests' model), written once if missing."""
    params = params or TinyModelParams()
    folder = folder or cache_dir()
    path = folder / f"{params.name}-{params.key()}.gguf"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        write_model(Path(tmp), params)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


if __name__ == "__main__":
    print(tiny_model_path())
