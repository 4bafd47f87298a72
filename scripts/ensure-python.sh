#!/usr/bin/env bash
# Print the path of a CPython >= 3.13.2 for the test venv, building 3.13.5 once into a cache if needed.
#
# Home Assistant's test harness (pytest-homeassistant-custom-component 0.13.316) needs >= 3.13.2;
# Debian 12 ships none and a pyenv 3.13.0 makes pip backtrack to an HA without ai_task. So: use
# python3.13 when new enough, else build Debian trixie's source package once into
# $HAL0_PYTHON_CACHE (default ~/.cache/hal0-bridge/python-3.13.5). The machine's apt sources and
# system Python are never changed: the trixie deb-src entry lives in a temp dir passed to apt.
set -euo pipefail

want_ok() {  # $1: interpreter; succeeds when it is >= 3.13.2 and has ssl/sqlite3/ctypes
  "$1" - <<'PY' >/dev/null 2>&1
import sys, ssl, sqlite3, ctypes, lzma, bz2, zlib, uuid
sys.exit(0 if sys.version_info >= (3, 13, 2) else 1)
PY
}

prefix="${HAL0_PYTHON_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hal0-bridge/python-3.13.5}"

for candidate in "${HAL0_PYTHON:-}" "$prefix/bin/python3.13" "$(command -v python3.13 || true)"; do
  if [ -n "$candidate" ] && [ -x "$candidate" ] && want_ok "$candidate"; then
    echo "$candidate"; exit 0
  fi
done

echo "ensure-python: building CPython 3.13.5 into $prefix (about 5 minutes, once)" >&2
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/parts" "$work/lists/partial"
# The mirror is whatever this machine already uses for Debian; only the suite changes to trixie.
mirror="$(grep -hoE 'https?://[^ ]+/debian/?$' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
          | head -n1 || true)"
[ -z "$mirror" ] && mirror="$(grep -hoE 'https?://[^ ]+/debian/? ' /etc/apt/sources.list 2>/dev/null | head -n1 | tr -d ' ')"
[ -n "$mirror" ] || { echo "ensure-python: no Debian mirror found in apt sources" >&2; exit 1; }
echo "deb-src [trusted=yes] ${mirror%/} trixie main" > "$work/parts/trixie-src.list"
aptopts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$work/parts"
         -o "Dir::State::Lists=$work/lists" -o "APT::Sandbox::User=root" -qq)
apt-get "${aptopts[@]}" update >&2
(cd "$work" && apt-get "${aptopts[@]}" source --download-only python3.13 >&2)
orig="$(ls "$work"/python3.13_3.13.*.orig.tar.xz | head -n1)"
tar -C "$work" -xf "$orig"
src="$(find "$work" -maxdepth 1 -type d -name 'Python-3.13*' | head -n1)"
(cd "$src" && ./configure --prefix="$prefix" --with-ensurepip=install >"$work/configure.log" 2>&1 \
  && make -j"$(nproc)" >"$work/make.log" 2>&1 && make install >"$work/install.log" 2>&1) || {
  echo "ensure-python: build failed; last lines of the logs:" >&2
  tail -n 30 "$work"/*.log >&2; exit 1; }
want_ok "$prefix/bin/python3.13" || { echo "ensure-python: built Python lacks a module" >&2; exit 1; }
echo "$prefix/bin/python3.13"
