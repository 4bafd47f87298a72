"""A ``podman`` / ``docker`` substitute for tests: containers are real processes, state is in files.

Put a wrapper named ``podman`` or ``docker`` first on PATH that runs this file with
``FAKE_CONTAINER_FLAVOR=podman|docker`` (see :func:`install`). Everything lives under
``$FAKE_CONTAINER_DIR``:

    calls                   every invocation's argv (flavor first), one line each
    images/<ref>.json       the local images: {"Cmd": [...], "Env": ["K=V"], "WorkingDir": "..."}
                            (:func:`add_image`); there is no registry, nothing is ever pulled
    containers/<name>.json  the container, in the shape ``container inspect`` prints
    containers/<name>.log   what the container's process printed (``logs``)

A started container is a real process: a small supervisor (conmon's job) runs the command in its
own process group on the host network, records ``State.Pid`` and, when it exits,
``State.ExitCode`` (128 + signal for a signal, as the runtimes report it) and ``FinishedAt``.
The container's environment is PATH and HOME plus the image's ``Env`` and ``-e``; its working
directory is ``-w`` or the image's ``WorkingDir``. Volumes, devices and security options are
accepted and ignored (processes see the host), so the stand-ins run unchanged.

Verbs: ``--version``, ``create``, ``run -d``, ``start``, ``stop [-t N]``, ``inspect`` /
``container inspect`` (JSON, or ``--format``/``-f`` with ``{{.Path.To.Field}}`` and ``{{json .}}``),
``rm [-f]``, ``logs [--tail N]``. An unknown option or verb fails like the real CLI (exit 125).

What the real tools print, and this fake copies. podman: measured with Debian's podman 4.3.1 on
the test machine (rootful, runc); docker: the docs and issue trackers (moby/moby, docker/cli), and
docker 28.2.2's CLI without an engine, measured here:

* podman exits 125 for its own errors, except ``rm`` of a missing container (1) and of a running
  one without ``-f`` (2) (containers/podman#2945); docker's CLI exits 1 for daemon errors and 125
  for ``create``/``run``.
* no such container — podman ``container inspect``: ``Error: inspecting object: no such container
  NAME``; ``inspect``: ``Error: inspecting object: no such object: "NAME"``; ``start``/``stop``/
  ``logs``/``rm``: ``Error: no container with name or ID "NAME" found: no such container`` (newer
  podman says "ID or name" in ``rm``). docker: ``Error response from daemon: No such container:
  NAME`` (older CLIs: ``Error: No such container: NAME``; ``inspect``: ``Error: No such object:
  NAME``), and ``start`` adds ``Error: failed to start containers: NAME``. Both inspect commands
  print ``[]`` on stdout first. docker without a daemon: ``[]`` and ``Cannot connect to the Docker
  daemon at unix:///var/run/docker.sock. Is the docker daemon running?``, exit 1.
* missing image with ``--pull=never`` — podman ``Error: REF: image not known``; docker
  ``Error response from daemon: No such image: REF`` (``:latest`` added to an untagged REF).
* a command that cannot be executed — podman ``start`` (exit 125): ``Error: unable to start
  container "ID": crun: executable file `X` not found in $PATH: No such file or directory: OCI
  runtime attempted to invoke a command that was not found`` (runc words the middle part ``runc
  create failed: unable to start container process: exec: "X": stat X: no such file or
  directory``); the container stays ``created``. docker: ``Error response from daemon: failed to
  create task for container: ... exec: "X": executable file not found in $PATH: unknown``.
* name in use — podman ``Error: creating container storage: the container name "NAME" is already
  in use by ID. You have to remove that container to be able to reuse that name: that name is
  already in use``; docker ``Error response from daemon: Conflict. The container name "/NAME" is
  already in use by container "ID". You have to remove (or rename) that container to be able to
  reuse that name.``
* ``start`` of a running container and ``stop`` of a stopped one succeed and print the name;
  ``create`` and ``run -d`` print the full 64-hex id. ``stop -t N`` sends SIGTERM, waits N seconds,
  then SIGKILL (``State.ExitCode`` 137); podman then warns on stderr ``time="..." level=warning
  msg="StopSignal SIGTERM failed to stop container NAME in N seconds, resorting to SIGKILL"``.
* a container whose process exits with 3: ``State.Status`` ``exited``, ``State.ExitCode`` 3,
  ``State.Error`` empty, its stderr in ``logs``.
* inspect JSON: ``Name`` is ``NAME`` (podman) or ``/NAME`` (docker); ``State.Status`` is
  ``created`` / ``running`` / ``exited``; podman adds ``ImageName`` and ``State.ConmonPid``.

Not reproduced: a real container's PID 1 ignores SIGTERM unless its program handles it (measured:
``sleep`` is SIGKILLed after ``-t``), which is why the deploy files run ComfyUI with ``--init``;
here the process gets SIGTERM as on the host.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

THIS = Path(__file__).resolve()
# options that take a value (as in podman/docker run); anything else starting with "-" is a flag
VALUE_OPTS = {
    "--name", "--label", "-l", "--device", "-v", "--volume", "-e", "--env", "--env-file", "--network", "--net",
    "--security-opt", "--group-add", "--pull", "-w", "--workdir", "--shm-size", "--ipc", "--user", "-u",
    "--entrypoint", "--stop-timeout", "--cap-add", "--cap-drop", "-p", "--publish", "--ulimit", "--memory",
    "--hostname", "--restart", "--cgroups", "--sdnotify", "--cidfile", "--mount", "--tmpfs", "--userns",
}  # fmt: skip
FLAG_OPTS = {"-d", "--detach", "--rm", "-i", "--interactive", "-t", "--tty", "--init", "--privileged", "--replace"}
STOP_WAIT_AFTER_KILL = 5.0


class CliError(Exception):
    def __init__(self, message: str, rc: int) -> None:
        super().__init__(message)
        self.rc = rc


def now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


# ------------------------------------------------------------------------------ for tests


def install(bindir: Path, state: Path, flavor: str) -> Path:
    """Write ``bindir/<flavor>`` running this fake with the test's Python; returns its path."""
    wrapper = bindir / flavor
    wrapper.write_text(
        f'#!/bin/sh\nFAKE_CONTAINER_FLAVOR={flavor} FAKE_CONTAINER_DIR="{state}" exec "{sys.executable}" "{THIS}" "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


def add_image(state: Path, ref: str, cmd: list[str], *, env: dict[str, str] | None = None, workdir: str = "") -> None:
    """A local image (as if built or pulled): its default command, environment and working dir."""
    path = state / "images" / f"{urllib.parse.quote(ref, safe='')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    env_list = [f"{k}={v}" for k, v in (env or {}).items()]
    path.write_text(json.dumps({"Cmd": cmd, "Env": env_list, "WorkingDir": workdir}))


def read_container(state: Path, name: str) -> dict[str, Any] | None:
    path = state / "containers" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def kill_all(state: Path) -> None:
    """SIGKILL every container process still running (test teardown) and wait until they are gone."""
    for path in (state / "containers").glob("*.json"):
        pid = json.loads(path.read_text())["State"]["Pid"]
        if pid:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                continue
            deadline = time.monotonic() + STOP_WAIT_AFTER_KILL
            while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                time.sleep(0.02)


def calls(state: Path) -> list[list[str]]:
    """Every invocation as argv lists (without the flavor)."""
    path = state / "calls"
    return [json.loads(line)[1:] for line in path.read_text().splitlines()] if path.exists() else []


# ------------------------------------------------------------------------------ state files


class Store:
    def __init__(self, root: Path, flavor: str) -> None:
        self.root = root
        self.flavor = flavor
        (root / "containers").mkdir(parents=True, exist_ok=True)
        (root / "images").mkdir(parents=True, exist_ok=True)

    @contextmanager
    def locked(self) -> Iterator[None]:
        with open(self.root / "lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def path(self, name: str) -> Path:
        return self.root / "containers" / f"{name}.json"

    def log_path(self, name: str) -> Path:
        return self.root / "containers" / f"{name}.log"

    def get(self, name: str) -> dict[str, Any] | None:
        path = self.path(name)
        if path.exists():
            return json.loads(path.read_text())
        for other in (self.root / "containers").glob("*.json"):  # by id (or a unique prefix of it)
            data = json.loads(other.read_text())
            if data["Id"].startswith(name) and len(name) >= 3:
                return data
        return None

    def put(self, data: dict[str, Any]) -> None:
        name = data["Name"].lstrip("/")
        tmp = self.path(name).with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=4))
        tmp.replace(self.path(name))

    def image(self, ref: str) -> dict[str, Any] | None:
        path = self.root / "images" / f"{urllib.parse.quote(ref, safe='')}.json"
        return json.loads(path.read_text()) if path.exists() else None


# ------------------------------------------------------------------------------ messages


def no_such_container(flavor: str, verb: str, name: str) -> CliError:
    if flavor == "docker":
        if verb == "inspect":
            return CliError(f"Error: No such object: {name}", 1)
        msg = f"Error response from daemon: No such container: {name}"
        if verb == "start":
            msg += f"\nError: failed to start containers: {name}"
        return CliError(msg, 1)
    if verb == "container inspect":
        return CliError(f"Error: inspecting object: no such container {name}", 125)
    if verb == "inspect":
        return CliError(f'Error: inspecting object: no such object: "{name}"', 125)
    return CliError(f'Error: no container with name or ID "{name}" found: no such container', 1 if verb == "rm" else 125)


# ------------------------------------------------------------------------------ options


def parse_run_options(args: list[str]) -> tuple[dict[str, list[str]], set[str], list[str]]:
    """``[OPTIONS] IMAGE [COMMAND...]`` -> (value options, flags, [IMAGE, COMMAND...])."""
    values: dict[str, list[str]] = {}
    flags: set[str] = set()
    i = 0
    while i < len(args) and args[i].startswith("-"):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        key, eq, value = arg.partition("=")
        if key in VALUE_OPTS:
            if not eq:
                if i + 1 >= len(args):
                    raise CliError(f"Error: flag needs an argument: {key}", 125)
                i += 1
                value = args[i]
            values.setdefault(key, []).append(value)
        elif arg in FLAG_OPTS:
            flags.add(arg)
        else:
            raise CliError(f"Error: unknown flag: {key}", 125)
        i += 1
    return values, flags, args[i:]


def _opt(values: dict[str, list[str]], *names: str) -> list[str]:
    return [v for n in names for v in values.get(n, [])]


# ------------------------------------------------------------------------------ verbs


def cmd_create(store: Store, args: list[str], out: list[str]) -> dict[str, Any]:
    values, flags, rest = parse_run_options(args)
    if not rest:
        raise CliError('Error: requires at least 1 arg(s), only received 0' if store.flavor == "podman"
                       else '"docker create" requires at least 1 argument.', 125)  # fmt: skip
    ref, command = rest[0], rest[1:]
    names = _opt(values, "--name")
    cid = secrets.token_hex(32)
    name = names[-1] if names else f"fake_{cid[:8]}"
    with store.locked():
        existing = store.get(name)
        if existing is not None and existing["Name"].lstrip("/") == name:
            if store.flavor == "docker":
                raise CliError(
                    f'Error response from daemon: Conflict. The container name "/{name}" is already in use by container '
                    f'"{existing["Id"]}". You have to remove (or rename) that container to be able to reuse that name.', 125
                )  # fmt: skip
            raise CliError(
                f'Error: creating container storage: the container name "{name}" is already in use by {existing["Id"]}. '
                "You have to remove that container to be able to reuse that name: that name is already in use", 125
            )  # fmt: skip
        image = store.image(ref)
        if image is None:  # no registry here: whatever the pull policy, a missing image is missing
            if store.flavor == "docker":
                shown = ref if ":" in ref.rsplit("/", 1)[-1] else f"{ref}:latest"
                raise CliError(f"Error response from daemon: No such image: {shown}", 125)
            raise CliError(f"Error: {ref}: image not known", 125)
        labels = dict(label.partition("=")[::2] for label in _opt(values, "--label", "-l"))
        env = [*image.get("Env", []), *_opt(values, "-e", "--env")]
        workdir = (_opt(values, "-w", "--workdir") or [image.get("WorkingDir", "")])[-1]
        data: dict[str, Any] = {
            "Id": cid,
            "Created": now(),
            "Name": f"/{name}" if store.flavor == "docker" else name,
            "Image": "sha256:" + secrets.token_hex(32),
            "Config": {"Image": ref, "Cmd": command or image.get("Cmd", []), "Env": env, "WorkingDir": workdir,
                       "Labels": labels},
            "HostConfig": {"NetworkMode": (_opt(values, "--network", "--net") or ["default"])[-1],
                           "Devices": _opt(values, "--device"), "Binds": _opt(values, "-v", "--volume"),
                           "SecurityOpt": _opt(values, "--security-opt"), "GroupAdd": _opt(values, "--group-add"),
                           "AutoRemove": "--rm" in flags},
            "State": {"Status": "created", "Running": False, "Paused": False, "Restarting": False,
                      "OOMKilled": False, "Dead": False, "Pid": 0, "ExitCode": 0, "Error": "",
                      "StartedAt": "0001-01-01T00:00:00Z", "FinishedAt": "0001-01-01T00:00:00Z"},
        }  # fmt: skip
        if store.flavor == "podman":
            data["ImageName"] = ref
            data["State"]["ConmonPid"] = 0
        store.put(data)
    out.append(cid)
    return data


def container_env(data: dict[str, Any]) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root")}
    for item in data["Config"]["Env"]:
        key, _, value = item.partition("=")
        env[key] = value
    return env


def cmd_start(store: Store, name: str, out: list[str]) -> None:
    with store.locked():
        data = store.get(name)
        if data is None:
            raise no_such_container(store.flavor, "start", name)
        if data["State"]["Running"]:
            out.append(name)
            return
        argv = data["Config"]["Cmd"]
        env = container_env(data)
        exe = argv[0] if argv else ""
        if not exe or shutil.which(exe, path=env["PATH"]) is None:
            data["State"].update(Error=f"exec: {exe!r}: executable file not found in $PATH", ExitCode=127)
            store.put(data)
            if store.flavor == "docker":
                raise CliError(
                    "Error response from daemon: failed to create task for container: failed to create shim task: "
                    "OCI runtime create failed: runc create failed: unable to start container process: "
                    f'exec: "{exe}": executable file not found in $PATH: unknown\nError: failed to start containers: {name}',
                    1,
                )  # fmt: skip
            raise CliError(
                f'Error: unable to start container "{data["Id"]}": crun: executable file `{exe}` not found in $PATH: '
                "No such file or directory: OCI runtime attempted to invoke a command that was not found", 125
            )  # fmt: skip
        launch(store, data)
    out.append(name)


def launch(store: Store, data: dict[str, Any]) -> None:
    """Fork a supervisor that runs the container's process and records its exit; return once running."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # supervisor
        os.close(read_fd)
        os.setsid()
        try:
            supervise(store, data, write_fd)
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        pipe.read()  # the supervisor closes its end once the state says "running"


def supervise(store: Store, data: dict[str, Any], ready_fd: int) -> None:
    name, cid = data["Name"].lstrip("/"), data["Id"]
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    with open(store.log_path(name), "ab") as log:
        child = subprocess.Popen(
            data["Config"]["Cmd"], stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=container_env(data),
            cwd=data["Config"]["WorkingDir"] or None, start_new_session=True,
        )  # fmt: skip
    data["State"].update(Status="running", Running=True, Pid=child.pid, ExitCode=0, Error="", StartedAt=now(),
                         FinishedAt="0001-01-01T00:00:00Z", OOMKilled=False)  # fmt: skip
    if store.flavor == "podman":
        data["State"]["ConmonPid"] = os.getpid()
    store.put(data)
    os.close(ready_fd)
    code = child.wait()
    with store.locked():
        current = store.get(name)
        if current is None or current["Id"] != cid:  # removed (rm -f) meanwhile
            return
        current["State"].update(Status="exited", Running=False, Pid=0, ExitCode=128 - code if code < 0 else code,
                                FinishedAt=now())  # fmt: skip
        if store.flavor == "podman":
            current["State"]["ConmonPid"] = 0
        store.put(current)
        if current["HostConfig"].get("AutoRemove"):
            store.path(name).unlink()


def _signal(data: dict[str, Any], sig: int) -> None:
    pid = data["State"]["Pid"]
    if pid:
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _wait_exited(store: Store, name: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        data = store.get(name)
        if data is None or not data["State"]["Running"]:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def cmd_stop(store: Store, args: list[str], out: list[str], err: list[str]) -> None:
    timeout, names, i = 10.0, [], 0
    while i < len(args):
        arg = args[i]
        key, eq, value = arg.partition("=")
        if key in ("-t", "--time", "--timeout"):
            if not eq:
                i += 1
                value = args[i]
            timeout = float(int(value))
        elif arg.startswith("-"):
            raise CliError(f"Error: unknown flag: {key}", 125)
        else:
            names.append(arg)
        i += 1
    for name in names:
        data = store.get(name)
        if data is None:
            raise no_such_container(store.flavor, "stop", name)
        if data["State"]["Running"]:
            _signal(data, signal.SIGTERM)
            if not _wait_exited(store, name, timeout):
                if store.flavor == "podman":
                    err.append(f'time="{now()}" level=warning msg="StopSignal SIGTERM failed to stop container {name} '
                               f'in {int(timeout)} seconds, resorting to SIGKILL"')  # fmt: skip
                _signal(data, signal.SIGKILL)
                _wait_exited(store, name, STOP_WAIT_AFTER_KILL)
        out.append(name)


TEMPLATE = re.compile(r"\{\{\s*(json\s+)?\.([A-Za-z0-9_.]*)\s*\}\}")


def render(fmt: str, data: dict[str, Any]) -> str:
    if fmt == "json":
        return json.dumps(data)

    def field(m: re.Match[str]) -> str:
        value: Any = data
        for part in filter(None, m.group(2).split(".")):
            if not isinstance(value, dict) or part not in value:
                raise CliError(f'Error: template: inspect:1: can\'t evaluate field {part}', 125)
            value = value[part]
        if m.group(1) or isinstance(value, (dict, list)):
            return json.dumps(value)
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    return TEMPLATE.sub(field, fmt)


def cmd_inspect(store: Store, verb: str, args: list[str], out: list[str]) -> None:
    fmt, names, i = None, [], 0
    while i < len(args):
        key, eq, value = args[i].partition("=")
        if key in ("-f", "--format"):
            if not eq:
                i += 1
                value = args[i]
            fmt = value
        elif key == "--type":
            if not eq:
                i += 1
        elif args[i].startswith("-"):
            raise CliError(f"Error: unknown flag: {key}", 125)
        else:
            names.append(args[i])
        i += 1
    found, missing = [], None
    for name in names:
        data = store.get(name)
        if data is None:
            missing = missing or name
        else:
            found.append(data)
    if fmt is None:
        out.append(json.dumps(found, indent=4))
    else:
        out.extend(render(fmt, d) for d in found)
    if missing is not None:
        raise no_such_container(store.flavor, verb, missing)


def cmd_rm(store: Store, args: list[str], out: list[str]) -> None:
    force = any(a in ("-f", "--force") for a in args)
    for name in (a for a in args if not a.startswith("-")):
        with store.locked():
            data = store.get(name)
            if data is None:
                raise no_such_container(store.flavor, "rm", name)
            if data["State"]["Running"]:
                if not force:
                    if store.flavor == "docker":
                        raise CliError(
                            f'Error response from daemon: cannot remove container "/{name}": container is running: '
                            "stop the container before removing or force remove", 1
                        )  # fmt: skip
                    raise CliError(
                        f"Error: cannot remove container {data['Id']} as it is running - running or paused containers "
                        "cannot be removed without force: container state improper", 2
                    )  # fmt: skip
                _signal(data, signal.SIGKILL)
            store.path(data["Name"].lstrip("/")).unlink()
        out.append(name)


def cmd_logs(store: Store, args: list[str], out: list[str]) -> None:
    tail, names, i = None, [], 0
    while i < len(args):
        key, eq, value = args[i].partition("=")
        if key in ("--tail", "-n"):
            if not eq:
                i += 1
                value = args[i]
            tail = None if value == "all" else int(value)
        elif not args[i].startswith("-"):
            names.append(args[i])
        i += 1
    data = store.get(names[0]) if names else None
    if data is None:
        raise no_such_container(store.flavor, "logs", names[0] if names else "")
    log = store.log_path(data["Name"].lstrip("/"))
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    out.extend(lines[-tail:] if tail else lines if tail is None else [])


def main(argv: list[str]) -> int:
    flavor = os.environ.get("FAKE_CONTAINER_FLAVOR", "podman")
    store = Store(Path(os.environ["FAKE_CONTAINER_DIR"]), flavor)
    with open(store.root / "calls", "a") as fh:
        fh.write(json.dumps([flavor, *argv]) + "\n")
    out: list[str] = []
    err: list[str] = []
    rc = 0
    try:
        if argv and argv[0] == "container" and len(argv) > 1 and argv[1] == "inspect":
            verb, rest = "container inspect", argv[2:]
        else:
            verb, rest = (argv[0] if argv else ""), argv[1:]
        if verb in ("--version", "version"):
            out.append("podman version 4.3.1" if flavor == "podman" else "Docker version 28.2.2, build fake")
        elif verb == "create":
            cmd_create(store, rest, out)
        elif verb == "run":
            if "-d" not in rest and "--detach" not in rest:
                raise CliError("fake: only run -d is supported", 125)
            data = cmd_create(store, rest, out)
            cmd_start(store, data["Name"].lstrip("/"), [])
        elif verb == "start":
            for name in (a for a in rest if not a.startswith("-")):
                cmd_start(store, name, out)
        elif verb == "stop":
            cmd_stop(store, rest, out, err)
        elif verb in ("inspect", "container inspect"):
            cmd_inspect(store, verb, rest, out)
        elif verb == "rm":
            cmd_rm(store, rest, out)
        elif verb == "logs":
            cmd_logs(store, rest, out)
        else:
            raise CliError(f'Error: unrecognized command `{flavor} {verb}`', 125)
    except CliError as e:
        err.append(str(e))
        rc = e.rc
    if out:
        sys.stdout.write("\n".join(out) + "\n")
    if err:
        sys.stderr.write("\n".join(err) + "\n")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
