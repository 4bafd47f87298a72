"""An independent fuzzer: schemathesis reads ``/api/openapi.json`` of a real daemon and attacks it.

Unlike test_fuzz.py (our own strategies), schemathesis only knows the published document: every check
it has (``--checks all``: server errors, status codes, content types, response schemas, schema-valid
requests accepted and schema-violating ones refused, auth really enforced, 405s with ``Allow``) must
pass. The daemon runs as a process with a token and the ComfyUI stand-in (no slots, so no arbiter:
switchover and pin answer their documented 503 ``comfyui.arbiter_unavailable``, the one 5xx allowed).
Bounded: ``HAL0_SCHEMATHESIS_EXAMPLES`` cases per operation (default 25), a fixed seed unless
``HAL0_SCHEMATHESIS_SEED`` says otherwise. Left out: ``/api/events`` (an endless stream) and
``/comfyui/`` (ComfyUI's own API passed through as sent: its answers, a 405 or its 500 for a body that
is not JSON, are ComfyUI's, not ours; tests/daemon/http/test_comfyui_proxy.py covers the proxy).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fake_llama import free_port

REPO = Path(__file__).resolve().parents[3]
TOKEN = "schemathesis-token-0123"
EXAMPLES = os.environ.get("HAL0_SCHEMATHESIS_EXAMPLES", "25")
SEED = os.environ.get("HAL0_SCHEMATHESIS_SEED", "11")
START_TIMEOUT = 30.0
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LEFT_OUT = r"^/(api/events|comfyui)"
NO_LLM_SLOT = ("POST /v1/chat/completions", "POST /v1/completions", "POST /v1/embeddings")
RUN_TIMEOUT = 600.0
ST_CONFIG = """\
[checks.not_a_server_error]
# 503 comfyui.arbiter_unavailable is the documented answer of a bridge without an img slot
expected-statuses = ["1xx", "2xx", "3xx", "4xx", "503"]

[[operations]]
include-path = "/v1/images/edits"
# a schema cannot say "a picture of 64 to 4096 pixels a side": schemathesis's schema-valid uploads are
# 1x1 images, which the route rightly refuses with 422 image.invalid_image (every other check runs)
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
"""


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args} exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"{url} never answered: {log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[str]:
    """``python -m hal0_bridge`` with a token, pointed at the ComfyUI stand-in (both processes)."""
    comfy_port, port = free_port(), free_port()
    config = tmp_path / "hal0.toml"
    config.write_text(
        f'[server]\nport = {port}\ntoken = "{TOKEN}"\nstate_dir = "{tmp_path / "state"}"\n'
        f'[comfyui]\nurl = "http://127.0.0.1:{comfy_port}"\n[image]\ndefault_size = "64x64"\n'
        "idle_restore_minutes = 0\n"
    )
    logs = tmp_path / "standin.log", tmp_path / "daemon.log"
    with open(logs[0], "wb") as out0, open(logs[1], "wb") as out1:
        standin = subprocess.Popen(
            [sys.executable, "-m", "tests.support.comfyui_standin", "--port", str(comfy_port)],
            cwd=REPO, stdout=out0, stderr=subprocess.STDOUT,
        )  # fmt: skip
        bridge = subprocess.Popen(
            [sys.executable, "-m", "hal0_bridge", "--config", str(config)], cwd=REPO, stdout=out1, stderr=subprocess.STDOUT
        )
    try:
        _wait_http(f"http://127.0.0.1:{comfy_port}/system_stats", standin, logs[0])
        _wait_http(f"http://127.0.0.1:{port}/api/info", bridge, logs[1])
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(bridge)
        _stop(standin)


def test_schemathesis_finds_nothing(daemon: str, tmp_path: Path) -> None:
    st_config = tmp_path / "schemathesis.toml"
    st_config.write_text(ST_CONFIG)
    report = tmp_path / "report.json"
    argv = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(st_config), "--no-color",
        "run", f"{daemon}/api/openapi.json", "--header", f"Authorization: Bearer {TOKEN}",
        "--checks", "all", "--max-examples", EXAMPLES, "--seed", SEED, "--workers", "1",
        "--exclude-path-regex", LEFT_OUT, "--request-timeout", "20", "--generation-database", "none",
        "--report", "json", "--report-json-path", str(report),
    ]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    summary = proc.stdout
    selected = re.search(r"Selected: (\d+)/(\d+)", summary)
    tested = re.search(r"Tested: (\d+)", summary)
    assert selected and tested, summary[-2000:]
    operations = int(tested[1])
    # every operation but the ones left out was selected, and every selected one was tested
    with urllib.request.urlopen(urllib.request.Request(f"{daemon}/api/openapi.json", headers=AUTH)) as resp:
        paths = json.load(resp)["paths"]
    left_out = sum(len(methods) for path, methods in paths.items() if re.match(LEFT_OUT, path))
    assert left_out >= 2 and operations == int(selected[1]) == int(selected[2]) - left_out, summary[-2000:]
    # every operation reached its logic; the LLM ones, with no LLM slot in this configuration, can only
    # answer their documented 404 llm.model_not_found past validation (tests/daemon/llm drives them
    # against a real llama-server)
    warned = re.search(r"Missing test data:.*?\n\n(?P<ops>(?:\s+- .+\n)+)", summary)
    missing = set(re.findall(r"- (.+)", warned["ops"])) if warned else set()
    assert missing == set(NO_LLM_SLOT), summary[-2000:]
    generated = re.search(r"(\d+) generated", summary)
    assert generated and int(generated[1]) >= operations * int(EXAMPLES) // 2, summary[-2000:]  # it really fuzzed
    assert report.exists()  # the run really happened and wrote its report
