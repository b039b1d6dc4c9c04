"""The embedded Schema Registry: Apicurio Registry, built from Maven Central, run locally.

Opt-in (``distillery registry start``), beside the embedded broker: nothing else needs it.
``EmbeddedSchemaRegistry(settings)`` builds the application once per version into
``<cache_dir>/schema-registry/<version>`` (Maven and quarkus-maven-plugin, with the
``pom.xml`` shipped beside this module), then runs it as a detached Java process on
``127.0.0.1:<schema_registry_port>`` with its schemas in an H2 file under
``<state_dir>/schema-registry`` (they survive ``stop``/``start``). Its Confluent-compatible
API is at ``/apis/ccompat/v7``: the URL ``schema_registry_url`` takes.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import httpx

from distillery.errors import BrokerError
from distillery.settings import Settings
from workers.runtime.broker import require_java
from workers.runtime.procs import pid_in, port_free, stop_pid_file

log = logging.getLogger(__name__)

CCOMPAT_PATH = "/apis/ccompat/v7"
_MIN_JAVA = 17


@dataclass(frozen=True)
class SchemaRegistryStatus:
    running: bool
    pid: int | None
    url: str
    version: str
    data_dir: str
    log_file: str


class EmbeddedSchemaRegistry:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = settings.schema_registry_dir
        self.home = settings.state_dir / "schema-registry"
        self.pid_file = self.home / "registry.pid"
        self.log_file = self.home / "registry.log"

    @property
    def url(self) -> str:
        """What ``schema_registry_url`` should be to use this registry."""
        return f"http://127.0.0.1:{self.settings.schema_registry_port}{CCOMPAT_PATH}"

    # --- the build ---------------------------------------------------------------------
    def built(self) -> bool:
        return (self.app / "quarkus-run.jar").is_file()

    def check_tools(self) -> None:
        require_java(_MIN_JAVA, "the Schema Registry", "install it")
        if not self.built() and shutil.which("mvn") is None:
            raise BrokerError("Maven (mvn) is not installed; it builds the Schema Registry "
                              "from Maven Central once; install it", retriable=False)

    def build(self) -> None:
        """Build Apicurio Registry with Maven into the cache (once per version)."""
        if self.built():
            return
        self.check_tools()
        self.app.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.app.parent) as tmp:
            pom = Path(tmp) / "pom.xml"
            pom.write_text(_package_file("pom.xml"), encoding="utf-8")
            log.info("building Apicurio Registry %s from Maven Central (once)",
                     self.settings.schema_registry_version)
            cmd = ["mvn", "-q", "-B", "-f", str(pom), "package",
                   f"-Dapicurio.version={self.settings.schema_registry_version}",
                   # the application's own properties ask for a legacy jar in %prod
                   "-D%prod.quarkus.package.type=fast-jar"]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=tmp)
            built = Path(tmp) / "target" / "quarkus-app"
            if done.returncode != 0 or not (built / "quarkus-run.jar").is_file():
                tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
                raise BrokerError(f"Maven could not build Apicurio Registry "
                                  f"{self.settings.schema_registry_version}: "
                                  + " | ".join(tail))
            if self.app.exists():
                shutil.rmtree(self.app)
            os.replace(built, self.app)

    # --- life cycle --------------------------------------------------------------------
    def pid(self) -> int | None:
        return pid_in(self.pid_file)

    def answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/subjects", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def status(self) -> SchemaRegistryStatus:
        pid = self.pid()
        return SchemaRegistryStatus(pid is not None and self.answers(), pid, self.url,
                                    self.settings.schema_registry_version,
                                    str(self.home / "data"), str(self.log_file))

    def start(self, timeout_s: float = 120.0) -> bool:
        """Start it (building it first if need be); False if it was already running.
        Returns when it answers."""
        if self.pid() is not None:
            self.wait_until_ready(timeout_s)
            return False
        self.check_tools()
        if not port_free(self.settings.schema_registry_port):
            raise BrokerError(f"port {self.settings.schema_registry_port} on 127.0.0.1 is "
                              "already in use by another process; stop it or choose another "
                              "with DISTILLERY_SCHEMA_REGISTRY_PORT", retriable=False)
        self.build()
        (self.home / "data").mkdir(parents=True, exist_ok=True)
        config = {  # system properties outrank the application's own configuration
            "quarkus.http.port": str(self.settings.schema_registry_port),
            "quarkus.http.host": "127.0.0.1",
            "registry.datasource.url": f"jdbc:h2:file:{self.home / 'data' / 'registry'}",
        }
        with open(self.log_file, "ab") as out:
            proc = subprocess.Popen(
                ["java", "-Xmx256m", *(f"-D{k}={v}" for k, v in config.items()),
                 "-jar", str(self.app / "quarkus-run.jar")],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=self.home)
        self.pid_file.write_text(str(proc.pid), encoding="utf-8")
        self.wait_until_ready(timeout_s)
        return True

    def wait_until_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.pid() is None:
                raise BrokerError(f"the Schema Registry exited while starting; see "
                                  f"{self.log_file}")
            if self.answers():
                return
            time.sleep(0.5)
        raise BrokerError(f"the Schema Registry did not answer within {timeout_s:.0f}s; see "
                          f"{self.log_file}")

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop it; False if it was not running. Its schemas stay for the next start."""
        return stop_pid_file(self.pid_file, timeout_s) is not None


def _package_file(name: str) -> str:
    files = resources.files("workers.runtime").joinpath("schema_registry_files", name)
    return files.read_text(encoding="utf-8")
