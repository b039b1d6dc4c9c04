"""The embedded broker's secure mode (``distillery broker start --secure``): TLS, SCRAM users
per worker role, and KRaft's ``StandardAuthorizer``.

Everything lives in ``<state_dir>/broker-secure/secure`` (files 0600), made once:

- ``ca.pem`` / ``ca-key.pem``: a private CA (``cryptography``); ``broker.pem``: the broker's
  key and certificate (for 127.0.0.1 and localhost), the PEM keystore Kafka reads;
- ``users.json``: one SCRAM-SHA-512 user per role (``ROLES``) with a random password; the
  users are written into the broker's storage when it is formatted;
- ``<role>.toml``: a ``DISTILLERY_CONFIG`` file per role with the bootstrap address, the
  protocol, the role's user and password and the CA. A worker started with
  ``DISTILLERY_CONFIG=.../classify.toml`` connects as ``classify``.

The client listener is SASL_SSL; the controller listener (broker to controller, inside the
one process) is TLS with client certificates, so only the broker's own certificate gets in.
``admin`` (the CLI: topics, ``models``, ``replay``) and the broker are super users; every
other role gets only the ACLs of ``role_grants``: what its code reads, what it writes, its
consumer groups. Nothing is allowed where no ACL is found. ``client`` (the client library)
produces inputs, reads results and escalations and joins only groups named
``<prefix>client-*``, never a worker's group; writing feedback, which overrides the teacher
in training, is the separate ``feedback`` role's.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distillery.errors import BrokerError
from distillery.settings import Settings
from distillery.tasks import TaskConfig

MECHANISM = "SCRAM-SHA-512"
BROKER_CN = "distillery-broker"
ROLES = ("admin", "classify", "refine", "teacher", "trainer", "client", "feedback")
CLIENT_GROUPS = "client-"  # the client role joins only consumer groups named <prefix>client-*


@dataclass(frozen=True)
class SecureFiles:
    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def keystore(self) -> Path:
        return self.folder / "broker.pem"

    @property
    def users_file(self) -> Path:
        return self.folder / "users.json"

    def role_config(self, role: str) -> Path:
        return self.folder / f"{role}.toml"

    def ready(self) -> bool:
        return self.ca.is_file() and self.keystore.is_file() and self.users_file.is_file()

    def users(self) -> dict[str, str]:
        """role -> password."""
        data: dict[str, str] = json.loads(self.users_file.read_text(encoding="utf-8"))
        return data

    def make(self) -> None:
        """The CA, the broker's keystore and the users, unless they exist already."""
        if self.ready():
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        ca_key, ca_cert, key, cert = _certificates()
        from cryptography.hazmat.primitives import serialization

        pem = serialization.Encoding.PEM
        plain = serialization.NoEncryption()
        pkcs8 = serialization.PrivateFormat.PKCS8
        _write_private(self.folder / "ca-key.pem", ca_key.private_bytes(pem, pkcs8, plain))
        _write_private(self.ca, ca_cert.public_bytes(pem))
        _write_private(self.keystore, key.private_bytes(pem, pkcs8, plain)
                       + cert.public_bytes(pem) + ca_cert.public_bytes(pem))
        users = {role: secrets.token_hex(24) for role in ROLES}
        _write_private(self.users_file, json.dumps(users, indent=2).encode())

    def write_role_configs(self, bootstrap: str) -> None:
        for role, password in self.users().items():
            text = "".join(f'{key} = {json.dumps(value)}\n' for key, value in {
                "kafka_bootstrap": bootstrap, "kafka_security_protocol": "SASL_SSL",
                "kafka_sasl_mechanism": MECHANISM, "kafka_sasl_username": role,
                "kafka_sasl_password": password, "kafka_ssl_cafile": str(self.ca),
            }.items())
            _write_private(self.role_config(role), text.encode())

    def role_settings(self, settings: Settings, role: str, password: str | None = None
                      ) -> Settings:
        """``settings`` connecting as ``role`` (with another password, to be refused)."""
        from pydantic import SecretStr

        users = self.users()
        if password is None and role not in users:
            raise BrokerError(f"the secure broker in {self.folder} has no user {role!r} (it was "
                              "made before the role existed): stop it, remove that folder and "
                              "its data, and start it again", retriable=False)
        return settings.model_copy(update={
            "kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": MECHANISM,
            "kafka_sasl_username": role,
            "kafka_sasl_password": SecretStr(password or users[role]),
            "kafka_ssl_cafile": self.ca})

    # --- the broker's side ---------------------------------------------------------------
    def properties(self, port: int, controller_port: int) -> dict[str, str]:
        admin = self.users()["admin"]
        jaas = (f'org.apache.kafka.common.security.scram.ScramLoginModule required '
                f'username="admin" password="{admin}";')
        return {
            "listeners": f"SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            "advertised.listeners": f"SASL_SSL://127.0.0.1:{port}",
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:SSL",
            "inter.broker.listener.name": "SASL_SSL",
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config": jaas,
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.ca),
            "listener.name.controller.ssl.client.auth": "required",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": f"User:admin;User:CN={BROKER_CN}",
        }

    def format_args(self) -> list[str]:
        """``StorageTool format`` arguments that create the SCRAM users (passwords in them:
        they go to the JVM through ``argfile``, never on a command line ``ps`` shows)."""
        args: list[str] = []
        for role, password in self.users().items():
            args += ["--add-scram", f"{MECHANISM}=[name={role},password={password}]"]
        return args


def argfile(path: Path, args: list[str]) -> Path:
    """A java launcher argument file (``java ... @path``), readable by its owner only: each
    argument quoted on a line of its own."""
    def quoted(arg: str) -> str:
        return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'

    _write_private(path, ("\n".join(quoted(a) for a in args) + "\n").encode())
    return path


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _certificates() -> tuple[Any, Any, Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "distillery local CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, BROKER_CN)]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
                                              x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return ca_key, ca_cert, key, cert


# --- ACLs per role ----------------------------------------------------------------------
Grant = tuple[str, str, str, str]  # (role, resource: topic|group, pattern: literal|prefixed, name)


def role_grants(settings: Settings, tasks: list[TaskConfig]) -> dict[tuple[str, str], set[Grant]]:
    """(role, operation) -> what it may do it on, for this prefix and these tasks."""
    from streams.topics import (
        DEADLETTER_TOPIC,
        MODELS_TOPIC,
        escalations_topic,
        teacher_ledger_topic,
        trainer_lock_topic,
    )

    t = settings.topic
    p = settings.topic_prefix
    models = [t(MODELS_TOPIC), t(f"{MODELS_TOPIC}.blobs")]
    read: dict[str, list[str]] = {r: list(models) for r in ("classify", "refine", "trainer")}
    write: dict[str, list[str]] = {r: [t(DEADLETTER_TOPIC)] for r in
                                   ("classify", "refine", "teacher", "trainer")}
    read["teacher"], read["client"], write["client"] = [], [], []
    read["feedback"], write["feedback"] = [], []
    write["trainer"] += models
    for task in tasks:
        read["classify"].append(t(task.input_topic))
        write["classify"] += [t(task.results_topic), t(task.teacher_topic),
                              t(task.refine_topic)]
        read["refine"].append(t(task.refine_topic))
        write["refine"] += [t(task.results_topic), t(task.teacher_topic)]
        ledger = t(teacher_ledger_topic(task))
        read["teacher"] += [t(task.teacher_topic), ledger]
        write["teacher"] += [t(task.results_topic), t(task.verdicts_topic), ledger,
                             t(escalations_topic(task))]
        read["trainer"] += [t(task.verdicts_topic), t(task.feedback_topic),
                            t(trainer_lock_topic(task.name))]
        write["client"].append(t(task.input_topic))
        write["feedback"].append(t(task.feedback_topic))
        read["client"] += [t(task.results_topic), t(escalations_topic(task))]
    grants: dict[tuple[str, str], set[Grant]] = {}
    for role in ROLES[1:]:
        grants[(role, "DESCRIBE")] = {(role, "topic", "prefixed", p)}
        grants[(role, "READ")] = {(role, "topic", "literal", n) for n in read[role]}
        grants[(role, "WRITE")] = {(role, "topic", "literal", n) for n in write[role]}
        if role == "feedback":  # writes only: no consumer group
            continue
        group = (role, "group", "prefixed",
                 f"{p}{CLIENT_GROUPS}" if role == "client" else f"{p}distillery-{role}")
        grants[(role, "READ")].add(group)
        grants[(role, "DESCRIBE")].add(group)
    # faust's own topics (its leader topic) carry the classify app's id as their prefix
    grants[("classify", "ALL")] = {("classify", "topic", "prefixed", f"{p}distillery-classify")}
    return grants


def grant_roles(admin_settings: Settings, tasks: list[TaskConfig], timeout_s: float = 30.0
                ) -> int:
    """Create the ACLs of ``role_grants`` (as ``admin``) and wait until the broker applies
    them; returns how many there are. Granting again changes nothing."""
    from kafka.admin import (
        ACL,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        KafkaAdminClient,
        ResourcePattern,
        ResourceType,
    )

    acls = []
    for (role, operation), targets in role_grants(admin_settings, tasks).items():
        for _, resource, pattern, name in targets:
            if pattern == "prefixed" and not name:  # no topic prefix: every name
                pattern, name = "literal", "*"
            acls.append(ACL(
                principal=f"User:{role}", host="*", operation=ACLOperation[operation],
                permission_type=ACLPermissionType.ALLOW,
                resource_pattern=ResourcePattern(
                    ResourceType.TOPIC if resource == "topic" else ResourceType.GROUP, name,
                    ACLResourcePatternType.LITERAL if pattern == "literal"
                    else ACLResourcePatternType.PREFIXED)))
    admin = KafkaAdminClient(client_id="distillery-acls", **admin_settings.kafka_python_kwargs())
    try:
        result = admin.create_acls(acls)
        failed = result.get("failed") or []
        if failed:
            raise BrokerError(f"{len(failed)} ACLs were refused, e.g. {failed[0]}",
                              retriable=False)
        _wait_until_applied(admin, acls, timeout_s)
    finally:
        admin.close()
    return len(acls)


def _wait_until_applied(admin: Any, acls: list[Any], timeout_s: float) -> None:
    """Until the broker's authorizer lists every ACL: they reach it through the metadata log,
    a moment after ``create_acls`` returns, and a client that connects in between is
    refused (a producer's sends fail, a consumer sees no topics)."""
    from kafka.admin import (
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePatternFilter,
        ResourceType,
    )

    def key(acl: Any) -> tuple[Any, ...]:
        pattern = acl.resource_pattern
        return (acl.principal, acl.operation, pattern.resource_type, pattern.resource_name,
                pattern.pattern_type)

    wanted = {key(a) for a in acls}
    every = ACLFilter(principal=None, host="*", operation=ACLOperation.ANY,
                      permission_type=ACLPermissionType.ANY,
                      resource_pattern=ResourcePatternFilter(ResourceType.ANY, None,
                                                             ACLResourcePatternType.ANY))
    deadline = time.monotonic() + timeout_s
    while True:
        described, _ = admin.describe_acls(every)
        missing = wanted - {key(a) for a in described}
        if not missing:
            return
        if time.monotonic() > deadline:
            raise BrokerError(f"{len(missing)} ACLs not applied after {timeout_s:.0f}s",
                              retriable=True)
        time.sleep(0.2)
