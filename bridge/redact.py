"""What counts as a secret on screen (``--print-config``, logs): one rule, used everywhere.

- ``env`` and ``headers`` of a slot: every value (names stay), since any of them can be a key.
- ``command`` / ``args``: the value of any flag whose name contains a secret word (``--api-key X``,
  ``--api-key=X``, ``-token X``, ``--hf-token X``), ``NAME=VALUE`` words whose NAME does
  (``-e HF_TOKEN=X``), and ``Name: value`` header words whose Name does (``Authorization: Bearer X``).
  One-letter flags (``-k``) are never taken for secrets: they mean different things to different
  programs (``curl -k`` is "insecure"), so write keys with a program's long flag.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

REDACTED = "**redacted**"
SECRET_WORDS = ("key", "token", "secret", "passw", "auth", "credential", "bearer", "cookie", "session")
_FLAG = re.compile(r"^-{1,2}(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]+)(?P<eq>=(?P<value>.*))?$", re.S)
_ASSIGN = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)=(?P<value>.*)$", re.S)
_HEADER = re.compile(r"^(?P<name>[A-Za-z0-9_-]+):\s*(?P<value>.+)$", re.S)


def is_secret_name(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in SECRET_WORDS)


def redact_values(values: Mapping[str, str]) -> dict[str, str]:
    return {name: REDACTED for name in values}


def redact_argv(argv: Iterable[str]) -> list[str]:
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next and not arg.startswith("-"):
            out.append(REDACTED)
            hide_next = False
            continue
        hide_next = False
        if (flag := _FLAG.match(arg)) is not None:
            if is_secret_name(flag["name"]):
                if flag["eq"] is not None:
                    out.append(f"{arg[: flag.start('value')]}{REDACTED}")
                    continue
                hide_next = True
            out.append(arg)
        elif (assign := _ASSIGN.match(arg)) is not None and is_secret_name(assign["name"]):
            out.append(f"{assign['name']}={REDACTED}")
        elif (header := _HEADER.match(arg)) is not None and is_secret_name(header["name"]):
            out.append(f"{header['name']}: {REDACTED}")
        else:
            out.append(arg)
    return out
