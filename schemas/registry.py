"""A Confluent-compatible Schema Registry, when one is configured (``schema_registry_url``).

Writing: a record is encoded as usual (single-object encoding, ``schemas.serde.encode``);
where it is sent, ``frame(topic, value)`` swaps the single-object header for Confluent's
(``00`` + the 4-byte id of the writer schema registered under ``<topic>-value``, the
topic-name strategy). The Avro body is the same bytes either way. A schema is registered
once per topic and version; registering one the subject already holds returns its id.

Reading: ``schemas.serde`` asks ``writer(schema_id)`` for a Confluent-framed record's writer
schema (fetched once per id, then cached) and resolves it to distillery's current schema of
the same record, as it does for the older versions it ships (schema evolution).

The registry is process-wide, like the log configuration: ``use_registry(settings)`` at a
process's start (the CLI does it for every command); without a URL nothing changes.
HTTP calls block, once per topic or id: the caches hold every answer for the process. An
outage is waited out for ``retry_s``; after that a worker stops without acknowledging what it
could not read or frame (``SchemaRegistryError``, retriable), rather than dead-lettering
records that are fine.
"""

from __future__ import annotations

import json
import logging
import struct
import threading
import time
from typing import Any

import httpx
from fastavro.schema import parse_schema

from distillery.errors import DistilleryError, SerializationError
from distillery.settings import Settings

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class SchemaRegistryError(DistilleryError):
    """The Schema Registry refused a request or could not be reached. An outage or a 5xx is
    retriable (a worker stops without acknowledging and its supervisor restarts it); a
    refusal (an incompatible schema, bad credentials) is not. ``status``: the HTTP status,
    if the registry answered."""

    def __init__(self, message: str, *, retriable: bool | None = None,
                 status: int | None = None) -> None:
        super().__init__(message, retriable=retriable)
        self.status = status


class SchemaRegistry:
    """A small client of the Confluent Schema Registry API (``/subjects``, ``/schemas/ids``)."""

    def __init__(self, url: str, auth: tuple[str, str] | None = None,
                 timeout_s: float = 10.0, retry_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.retry_s = retry_s
        self._http = httpx.Client(base_url=self.url, auth=auth, timeout=timeout_s,
                                  headers={"Accept": CONTENT_TYPE})
        self._headers: dict[tuple[str, bytes], bytes] = {}  # (topic, fingerprint) -> header
        self._writers: dict[int, Any] = {}  # id -> SchemaVersion
        self._lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        """One request; a retriable failure is tried again for ``retry_s`` (with backoff)
        before it is raised."""
        deadline, delay = time.monotonic() + self.retry_s, 0.2
        while True:
            try:
                return self._request(method, path, **kw)
            except SchemaRegistryError as exc:
                if not exc.retriable or time.monotonic() + delay > deadline:
                    raise
                log.warning("%s; trying again in %.1fs", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _request(self, method: str, path: str, **kw: Any) -> Any:
        try:
            reply = self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise SchemaRegistryError(f"the Schema Registry at {self.url} cannot be reached: "
                                      f"{type(exc).__name__}: {exc}", retriable=True) from exc
        if reply.status_code >= 400:
            try:
                message = str(reply.json().get("message", reply.text))
            except ValueError:
                message = reply.text
            raise SchemaRegistryError(
                f"the Schema Registry answered {method} {path} with {reply.status_code}: "
                f"{message[:300]}", retriable=reply.status_code >= 500 or reply.status_code == 429,
                status=reply.status_code)
        return reply.json()

    def register(self, subject: str, schema_json: str) -> int:
        """Register an Avro schema under ``subject`` (idempotent); its global id."""
        found = self._call("POST", f"/subjects/{subject}/versions",
                           content=json.dumps({"schema": schema_json}),
                           headers={"Content-Type": CONTENT_TYPE})
        return int(found["id"])

    def header_for(self, topic: str, fingerprint: bytes) -> bytes:
        """Confluent's header (``00`` + the schema id) for the shipped schema with this
        single-object fingerprint on ``topic``: registered under ``<topic>-value`` on first
        use, then cached."""
        key = (topic, fingerprint)
        known = self._headers.get(key)
        if known is None:
            from schemas.serde import schema_by_fingerprint

            schema = schema_by_fingerprint(fingerprint)
            with self._lock:
                known = self._headers.get(key)
                if known is None:
                    schema_id = self.register(f"{topic}-value", schema.source)
                    known = self._headers[key] = b"\x00" + struct.pack(">I", schema_id)
        return known

    def schema_json(self, schema_id: int) -> str:
        """The schema registered with this id, as its JSON text."""
        found = self._call("GET", f"/schemas/ids/{schema_id}")
        if found.get("schemaType", "AVRO") != "AVRO":
            raise SerializationError(f"schema id {schema_id} is a {found['schemaType']} "
                                     "schema, not Avro")
        return str(found["schema"])

    def writer(self, schema_id: int) -> Any:
        """The writer schema of a Confluent-framed record, as a ``SchemaVersion`` named after
        the distillery record type it writes (``SerializationError`` if none)."""
        known = self._writers.get(schema_id)
        if known is not None:
            return known
        try:
            text = self.schema_json(schema_id)
        except SchemaRegistryError as exc:
            if exc.status == 404:  # not an outage: the bytes name an id it does not hold
                raise SerializationError(f"Confluent schema id {schema_id} is not in the "
                                         f"Schema Registry at {self.url}") from exc
            raise
        found = _as_version(schema_id, text)
        with self._lock:
            self._writers[schema_id] = found
        return found


def _as_version(schema_id: int, text: str) -> Any:
    from schemas.serde import SchemaVersion, record_name_for

    try:
        parsed = parse_schema(json.loads(text))
    except Exception as exc:  # fastavro raises many kinds on a bad schema
        raise SerializationError(f"schema id {schema_id} is not a valid Avro schema: "
                                 f"{exc}") from exc
    full_name = parsed.get("name") if isinstance(parsed, dict) else None
    name = record_name_for(str(full_name))
    if name is None:
        raise SerializationError(f"schema id {schema_id} writes {full_name} records, which "
                                 "distillery does not read")
    return SchemaVersion(name=name, version=f"registry id {schema_id}", parsed=parsed,
                         fingerprint=b"", source=text)


_active: SchemaRegistry | None = None


def use_registry(settings: Settings) -> SchemaRegistry | None:
    """Use the registry ``settings`` name (or none) in this process; the one in use."""
    global _active
    if _active is not None and (settings.schema_registry_url is None
                                or _active.url != settings.schema_registry_url):
        _active.close()
        _active = None
    if _active is None and settings.schema_registry_url is not None:
        auth = None
        if settings.schema_registry_user is not None:
            secret = settings.schema_registry_password
            auth = (settings.schema_registry_user,
                    secret.get_secret_value() if secret is not None else "")
        _active = SchemaRegistry(settings.schema_registry_url, auth)
    return _active


def active_registry() -> SchemaRegistry | None:
    return _active


def frame(topic: str, value: bytes) -> bytes:
    """``value`` as the registry wants it on ``topic``: a single-object-encoded record gets
    Confluent's header with its schema's id under ``<topic>-value``. Anything else (JSON, a
    value already framed, no registry in use) is returned as it is."""
    from schemas.serde import SINGLE_OBJECT_MAGIC

    if _active is None or value[:2] != SINGLE_OBJECT_MAGIC:
        return value
    return _active.header_for(topic, value[2:10]) + value[10:]


__all__ = ["SchemaRegistry", "SchemaRegistryError", "active_registry", "frame",
           "use_registry"]
