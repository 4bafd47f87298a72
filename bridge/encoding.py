"""JSON out, as bytes that always encode: the one serialiser for HTTP answers, SSE and MQTT.

User text is echoed back (an unknown field's name in ``param``, a prompt in an event), and JSON lets a
client send a lone surrogate (``"\\ud800"``) that UTF-8 cannot encode. ``ensure_ascii=False`` keeps
other text readable; ``backslashreplace`` then turns only the unencodable surrogates into the JSON
escape they came in as (they can only occur inside JSON strings), so the answer is valid JSON and
says exactly what was received.
"""

from __future__ import annotations

import json
from typing import Any


def json_bytes(data: Any, *, default: Any = None) -> bytes:
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=default)
    return text.encode("utf-8", "backslashreplace")
