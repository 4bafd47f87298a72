"""Signed, expiring URLs: how an ``<img src>`` opens a token-protected image without a header.

A signed URL is the path plus ``?exp=<epoch seconds>&sig=<HMAC-SHA256(secret, path + "\\n" + exp)>``
(base64url, no padding). The secret is per install: 32 bytes from :func:`secrets.token_bytes`, made
once in ``<state_dir>/url-signing.key`` with mode 0600 and kept across restarts, so URLs handed out
stay valid until ``exp``; deleting the file revokes every URL at once. See docs/security.md.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import logging
import os
import secrets
import stat
import time
from pathlib import Path

_LOGGER = logging.getLogger(__name__)
KEY_FILE = "url-signing.key"
KEY_BYTES = 32
EXP_PARAM = "exp"
SIG_PARAM = "sig"


class Verdict(enum.Enum):
    VALID = "valid"
    EXPIRED = "expired"
    INVALID = "invalid"


def load_or_create_key(state_dir: Path) -> bytes:
    """The install's signing key; created (0600, exclusive) on first use, repaired if broken.

    Blocking file I/O: call it off the event loop (start-up runs it in a thread).
    """
    path = state_dir / KEY_FILE
    state_dir.mkdir(parents=True, exist_ok=True)
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        key = b""
    if len(key) == KEY_BYTES:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            _LOGGER.warning("%s was readable by others (mode %o); setting 0600", path, mode)
            path.chmod(0o600)
        return key
    if key:
        _LOGGER.warning("%s is not a %d-byte key; making a new one (signed URLs handed out so far stop working)",
                        path, KEY_BYTES)
    key = secrets.token_bytes(KEY_BYTES)
    tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)  # atomic: a reader sees the old key or the whole new one
    return key


class UrlSigner:
    """Signs and checks ``path`` + expiry with the install's key."""

    def __init__(self, key: bytes, ttl: float) -> None:
        self._key = key
        self.ttl = ttl

    def _mac(self, path: str, exp: str) -> str:
        digest = hmac.new(self._key, f"{path}\n{exp}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def query(self, path: str, *, now: float | None = None) -> str:
        """``exp=...&sig=...`` for ``path``, valid for ``ttl`` seconds from ``now``."""
        exp = str(int((time.time() if now is None else now) + self.ttl))
        return f"{EXP_PARAM}={exp}&{SIG_PARAM}={self._mac(path, exp)}"

    def sign(self, path: str, *, now: float | None = None) -> str:
        return f"{path}?{self.query(path, now=now)}"

    def verify(self, path: str, exp: str | None, sig: str | None, *, now: float | None = None) -> Verdict:
        """A tampered path, expiry or signature is INVALID; a genuine one past its expiry is EXPIRED."""
        if not exp or not sig or not exp.isascii() or not exp.isdigit() or len(exp) > 12:
            return Verdict.INVALID
        if not hmac.compare_digest(self._mac(path, exp).encode(), sig.encode("utf-8", "replace")):
            return Verdict.INVALID
        if int(exp) < (time.time() if now is None else now):
            return Verdict.EXPIRED
        return Verdict.VALID
