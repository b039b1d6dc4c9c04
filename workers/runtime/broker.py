"""The embedded default: a single-node KRaft Apache Kafka run from Maven Central's jars.

``EmbeddedBroker(settings)`` fetches the broker's classpath once per Kafka version into
``<cache_dir>/kafka/<version>`` (Maven, with the ``pom.xml`` shipped beside this module),
formats storage once under ``<state_dir>/broker`` and runs ``kafka.Kafka`` as a detached
process whose data survives ``stop``/``start``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from distillery.errors import BrokerError
from distillery.settings import Settings
from workers.runtime.procs import pid_in, port_free, stop_pid_file
from workers.runtime.secure import SecureFiles

log = logging.getLogger(__name__)

_DOCKER_HINT = "or run Kafka with `docker compose up` instead"
_MIN_JAVA = 17


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str
    kafka_version: str
    data_dir: str
    log_file: str


class EmbeddedBroker:
    """The broker; ``secure=True`` runs the SASL_SSL one with ACLs, in a folder of its own
    (``<state_dir>/broker-secure``; ``workers.runtime.secure``)."""

    def __init__(self, settings: Settings, secure: bool = False) -> None:
        self.settings = settings
        self.secure = SecureFiles(settings.state_dir / "broker-secure" / "secure") if secure \
            else None
        self.home = settings.state_dir / "broker-secure" if secure else settings.broker_dir
        self.jars = settings.kafka_jar_dir
        self.data_dir = self.home / "data"
        self.pid_file = self.home / "broker.pid"
        self.log_file = self.home / "broker.log"
        self.properties = self.home / "server.properties"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.settings.broker_port}"

    # --- tools and jars ----------------------------------------------------------------
    def check_tools(self, need_maven: bool) -> None:
        require_java(_MIN_JAVA, "Kafka 4", f"install it, {_DOCKER_HINT}")
        if need_maven and shutil.which("mvn") is None:
            raise BrokerError(
                f"Maven (mvn) is not installed; it fetches Kafka's jars once; install it, "
                f"{_DOCKER_HINT}",
                retriable=False,
            )

    def jars_ready(self) -> bool:
        return (self.jars / ".complete").is_file()

    def fetch_jars(self) -> None:
        """Fetch Kafka's jars with Maven into the cache (once per Kafka version)."""
        if self.jars_ready():
            return
        self.check_tools(need_maven=True)
        self.jars.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.jars.parent) as tmp:
            pom = Path(tmp) / "pom.xml"
            pom.write_text(_package_file("pom.xml"), encoding="utf-8")
            out = Path(tmp) / "libs"
            log.info("fetching Apache Kafka %s jars from Maven Central (once)",
                     self.settings.kafka_version)
            cmd = [
                "mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
                f"-Dkafka.version={self.settings.kafka_version}",
                f"-DoutputDirectory={out}", "-DincludeScope=runtime",
            ]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
                raise BrokerError(
                    f"Maven could not fetch Kafka {self.settings.kafka_version}: "
                    + " | ".join(tail)
                )
            (out / ".complete").write_text(self.settings.kafka_version, encoding="utf-8")
            if self.jars.exists():
                shutil.rmtree(self.jars)
            os.replace(out, self.jars)

    # --- life cycle --------------------------------------------------------------------
    def pid(self) -> int | None:
        return pid_in(self.pid_file)

    def status(self) -> BrokerStatus:
        pid = self.pid()
        return BrokerStatus(
            running=pid is not None and self.answers(),
            pid=pid,
            bootstrap=self.bootstrap,
            kafka_version=self.settings.kafka_version,
            data_dir=str(self.data_dir),
            log_file=str(self.log_file),
        )

    def start(self) -> bool:
        """Start the broker; returns False if it was already running. Returns when it answers."""
        if self.pid() is not None:
            self.wait_until_ready(self.settings.broker_start_timeout_s)
            return False
        self.check_tools(need_maven=not self.jars_ready())
        for port in (self.settings.broker_port, self.settings.broker_controller_port):
            if not port_free(port):
                raise BrokerError(
                    f"port {port} on 127.0.0.1 is already in use by another process; stop it "
                    "or choose another port with DISTILLERY_BROKER_PORT / "
                    "DISTILLERY_BROKER_CONTROLLER_PORT",
                    retriable=False,
                )
        self.fetch_jars()
        self.home.mkdir(parents=True, exist_ok=True)
        if self.secure is not None:
            self.secure.make()
            self.secure.write_role_configs(self.bootstrap)
        self._write_properties()
        self._format_once()
        self._spawn()
        self.wait_until_ready(self.settings.broker_start_timeout_s)
        return True

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the broker; returns False if it was not running."""
        return stop_pid_file(self.pid_file, timeout_s) is not None

    def logs(self, lines: int = 50) -> list[str]:
        if not self.log_file.is_file():
            return []
        return self.log_file.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]

    def client_settings(self, role: str = "admin") -> Settings:
        """Settings that reach this broker (as ``role`` when it is the secure one)."""
        plain = self.settings.model_copy(update={"kafka_bootstrap": self.bootstrap})
        if self.secure is None or not self.secure.ready():
            return plain
        return self.secure.role_settings(plain, role)

    def answers(self) -> bool:
        """True when the broker serves metadata on its listener."""
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        try:
            admin = KafkaAdminClient(
                request_timeout_ms=3000, client_id="distillery-probe",
                **self.client_settings().kafka_python_kwargs(),
            )
        except (KafkaError, OSError, ValueError):
            return False
        try:
            admin.list_topics()
            return True
        except (KafkaError, OSError):
            return False
        finally:
            admin.close()

    def wait_until_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.pid() is None:
                tail = " | ".join(self.logs(5))
                raise BrokerError(f"the broker exited while starting; log tail: {tail}")
            if _port_open(self.settings.broker_port) and self.answers():
                return
            time.sleep(0.5)
        raise BrokerError(f"the broker did not answer within {timeout_s:.0f}s; see {self.log_file}")

    # --- internals ---------------------------------------------------------------------
    def _write_properties(self) -> None:
        s = self.settings
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{s.broker_controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{s.broker_port},"
            f"CONTROLLER://127.0.0.1:{s.broker_controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{s.broker_port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": str(s.topic_partitions),
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "6",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "log.cleaner.backoff.ms": "1000",
        }
        if self.secure is not None:
            props.update(self.secure.properties(s.broker_port, s.broker_controller_port))
        text = "".join(f"{k}={v}\n" for k, v in props.items())
        fd = os.open(self.properties, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:  # may hold the admin's password
            out.write(text)

    def _java(self) -> list[str]:
        log4j = self.home / "log4j2.properties"
        log4j.write_text(_package_file("log4j2.properties"), encoding="utf-8")
        return [
            "java", f"-Xmx{self.settings.broker_heap}", f"-Xms{self.settings.broker_heap}",
            "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp", str(self.jars / "*"),
        ]

    def _format_once(self) -> None:
        if (self.data_dir / "meta.properties").is_file():
            return
        cluster_file = self.home / "cluster.id"
        if not cluster_file.is_file():
            cluster_file.write_text(_cluster_id(), encoding="utf-8")
        tool = [
            # "--cluster-id=ID" in one argument: a base64 id may start with "-".
            "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_file.read_text().strip()}",
            "-c", str(self.properties), "--ignore-formatted",
        ]
        if self.secure is None:
            done = subprocess.run(self._java() + tool, capture_output=True, text=True,
                                  check=False)
        else:  # the users' passwords go in a 0600 argument file, not on the command line
            from workers.runtime.secure import argfile

            args = argfile(self.home / "format.args", tool + self.secure.format_args())
            try:
                done = subprocess.run(self._java() + [f"@{args}"], capture_output=True,
                                      text=True, check=False)
            finally:
                args.unlink(missing_ok=True)
        if done.returncode != 0:
            detail = done.stderr.strip()[-400:]
            if self.secure is not None:  # the tool may echo an argument
                for password in self.secure.users().values():
                    detail = detail.replace(password, "***")
            raise BrokerError(f"formatting Kafka storage failed: {detail}", retriable=False)

    def _spawn(self) -> None:
        cmd = self._java() + ["kafka.Kafka", str(self.properties)]
        with open(self.log_file, "ab") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=self.home,
            )
        self.pid_file.write_text(str(proc.pid), encoding="utf-8")
        log.info("embedded Kafka %s starting (pid %s) on %s", self.settings.kafka_version,
                 proc.pid, self.bootstrap)


def _package_file(name: str) -> str:
    files = resources.files("workers.runtime").joinpath("broker_files", name)
    return files.read_text(encoding="utf-8")


def _cluster_id() -> str:
    # Kafka cluster ids are 16 random bytes in URL-safe base64 without padding.
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def require_java(minimum: int, who: str, hint: str) -> None:
    """A ``BrokerError`` (not retriable) unless Java ``minimum``+ is on the PATH."""
    java = shutil.which("java")
    if java is None:
        raise BrokerError(f"Java {minimum}+ is not installed ({who} needs it); {hint}",
                          retriable=False)
    version = _java_major(java)
    if version is not None and version < minimum:
        raise BrokerError(f"Java {version} found, {who} needs Java {minimum}+; {hint}",
                          retriable=False)


def _java_major(java: str) -> int | None:
    done = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0
