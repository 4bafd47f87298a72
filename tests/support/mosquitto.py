"""A real mosquitto broker for tests, and an independent paho client that watches it.

``Mosquitto`` runs /usr/sbin/mosquitto on a free 127.0.0.1 port with a generated config (anonymous,
or with a password file made by ``mosquitto_passwd -b``), stops it by pid and restarts it on the
same port. ``MqttProbe`` is a second client (not the bridge's code) that records every message with
its QoS and retain flag; MQTT 5 with retain-as-published, so live retained messages keep the flag.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

MOSQUITTO = os.environ.get("MOSQUITTO", "/usr/sbin/mosquitto")
MOSQUITTO_PASSWD = os.environ.get("MOSQUITTO_PASSWD", "/usr/bin/mosquitto_passwd")
START_TIMEOUT = 10.0  # seconds for the broker to accept connections
STOP_TIMEOUT = 5.0
WAIT_TIMEOUT = 10.0  # default bound for waiting on a message in tests (not a speed assertion)


def have_mosquitto() -> bool:
    return Path(MOSQUITTO).exists() or shutil.which("mosquitto") is not None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A throw-away CA, a server certificate for 127.0.0.1 signed by it, and a client certificate."""

    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """Generate the PEM files with ``cryptography`` (a Home Assistant dependency, so in the venv)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
        path.write_bytes(
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        return path

    def write_cert(cert: x509.Certificate, path: Path) -> Path:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(name("hal0 test CA")).issuer_name(name("hal0 test CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip

    def leaf(cn: str, usage: x509.ObjectIdentifier, san: list[x509.GeneralName]) -> tuple[x509.Certificate, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )  # fmt: skip
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    server, server_key = leaf(
        "127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
    )  # fmt: skip
    client, client_key = leaf("hal0-bridge", ExtendedKeyUsageOID.CLIENT_AUTH, [])
    return TlsFiles(
        ca_file=write_cert(ca, directory / "ca.pem"),
        server_cert=write_cert(server, directory / "server.pem"),
        server_key=write_key(server_key, directory / "server.key"),
        client_cert=write_cert(client, directory / "client.pem"),
        client_key=write_key(client_key, directory / "client.key"),
    )


class Mosquitto:
    """One broker process; ``users`` (name -> password) turns anonymous access off.

    ``tls=True`` makes the listener TLS-only with a generated CA (``self.tls``);
    ``require_client_cert=True`` also demands a client certificate signed by that CA.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        users: dict[str, str] | None = None,
        port: int | None = None,
        tls: bool = False,
        require_client_cert: bool = False,
        acl: str | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.users = dict(users or {})
        self.tls = make_tls_files(self.workdir / "tls") if tls or require_client_cert else None
        self.require_client_cert = require_client_cert
        self.acl = acl  # mosquitto acl_file contents
        self.conf = self.workdir / "mosquitto.conf"
        self.log = self.workdir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._write_config()

    def _write_config(self) -> None:
        lines = [f"listener {self.port} {self.host}", "persistence false", f"log_dest file {self.log}", "log_type all"]
        if self.tls is not None:
            lines += [f"cafile {self.tls.ca_file}", f"certfile {self.tls.server_cert}", f"keyfile {self.tls.server_key}"]
            if self.require_client_cert:
                lines.append("require_certificate true")
        if os.geteuid() == 0:
            lines.append(f"user {getpass.getuser()}")  # do not drop to "mosquitto": it could not read workdir
        if self.users:
            pwfile = self.workdir / "passwd"
            pwfile.unlink(missing_ok=True)
            for i, (name, password) in enumerate(self.users.items()):
                flags = ["-c"] if i == 0 else []
                subprocess.run([MOSQUITTO_PASSWD, *flags, "-b", str(pwfile), name, password], check=True)
            pwfile.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {pwfile}"]
        if self.acl is not None:
            aclfile = self.workdir / "acl"
            aclfile.write_text(self.acl)
            aclfile.chmod(0o600)
            lines.append(f"acl_file {aclfile}")
        else:
            lines.append("allow_anonymous true")
        self.conf.write_text("\n".join(lines) + "\n")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> Mosquitto:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"mosquitto exited ({self.proc.returncode}): {err} {self.log_text()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self  # TCP accept is enough: mosquitto listens only once its config loaded
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {self.port}: {self.log_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, sig)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stderr:
            proc.stderr.close()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> Mosquitto:
        """Stop and start again on the same port (retained messages are lost: persistence is off)."""
        self.stop()
        return self.start()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(slots=True)
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: Any = None
    at: float = field(default_factory=time.perf_counter)

    @property
    def text(self) -> str:
        return self.payload.decode()

    def json(self) -> Any:
        return json.loads(self.payload)


class MqttProbe:
    """An independent MQTT 5 client that subscribes and records (thread-safe, paho's own thread)."""

    def __init__(
        self,
        broker: Mosquitto,
        *,
        username: str | None = None,
        password: str | None = None,
        client_id: str | None = None,
    ) -> None:
        self.broker = broker
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id or f"probe-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
        )
        if username:
            self.client.username_pw_set(username, password)
        if broker.tls is not None:
            self.client.tls_set(
                ca_certs=str(broker.tls.ca_file),
                certfile=str(broker.tls.client_cert) if broker.require_client_cert else None,
                keyfile=str(broker.tls.client_key) if broker.require_client_cert else None,
            )
        self._lock = threading.Lock()
        self._messages: list[Received] = []
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self.on_receive: Callable[[Received], None] | None = None
        self.client.on_connect = lambda c, u, f, rc, p: self._connected.set() if not rc.is_failure else None
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._subscribed.set()
        self.client.on_message = self._on_message

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        item = Received(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain), getattr(msg, "properties", None))
        with self._lock:
            self._messages.append(item)
        if self.on_receive is not None:
            self.on_receive(item)

    async def connect(self, *subscriptions: str) -> MqttProbe:
        """Connect and subscribe (QoS 2, retain as published) to each filter; waits for the SUBACK."""
        await asyncio.to_thread(self.client.connect, self.broker.host, self.broker.port, 30)
        self.client.loop_start()
        if not await asyncio.to_thread(self._connected.wait, WAIT_TIMEOUT):
            raise TimeoutError("probe could not connect")
        if subscriptions:
            self._subscribed.clear()
            opts = SubscribeOptions(qos=2, retainAsPublished=True)
            self.client.subscribe([(s, opts) for s in subscriptions])
            if not await asyncio.to_thread(self._subscribed.wait, WAIT_TIMEOUT):
                raise TimeoutError("probe subscription was not acknowledged")
        return self

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(
        self,
        topic: str,
        payload: str | bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        response_topic: str | None = None,
        correlation: bytes | None = None,
    ) -> None:
        """Enqueue one message (MQTT 5 response topic / correlation data when given)."""
        props = None
        if response_topic or correlation:
            props = Properties(PacketTypes.PUBLISH)
            if response_topic:
                props.ResponseTopic = response_topic
            if correlation:
                props.CorrelationData = correlation
        # paho's thread sends it; messages from one client keep their order, so no wait is needed
        self.client.publish(topic, payload, qos=qos, retain=retain, properties=props)

    def messages(self, topic: str | None = None) -> list[Received]:
        with self._lock:
            return [m for m in self._messages if topic is None or m.topic == topic]

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()

    async def wait_for(
        self,
        topic: str,
        predicate: Callable[[Received], bool] | None = None,
        *,
        timeout: float = WAIT_TIMEOUT,
        after: int = 0,
    ) -> Received:
        """The first message on ``topic`` (index >= ``after`` among that topic's) matching ``predicate``."""
        deadline = time.monotonic() + timeout
        while True:
            for msg in self.messages(topic)[after:]:
                if predicate is None or predicate(msg):
                    return msg
            if time.monotonic() > deadline:
                seen = [(m.topic, m.payload[:200]) for m in self.messages()][-20:]
                raise TimeoutError(f"no matching message on {topic!r}; last seen: {seen}")
            await asyncio.sleep(0.02)

    async def __aenter__(self) -> MqttProbe:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
