"""Serde: Avro with standard framing (schemas parsed once), and JSON beside it.

Writing uses Avro *single-object encoding* (``C3 01`` + the 8-byte little-endian
CRC-64-AVRO fingerprint of the writer schema + the Avro binary body), which needs no schema
registry. Reading accepts single-object encoding from any schema version shipped in
``schemas/avro`` (``<name>.avsc`` is current, ``<name>.vN.avsc`` are older versions) and
Confluent's wire format (``00`` + 4-byte big-endian schema id), whose writer schema comes
from the Schema Registry in use (``schemas.registry``; it also frames what the workers send).
A record written with an older schema is resolved to the current one (schema evolution).

JSON, because it is what most Kafka producers write and what every client can read: a
record as one UTF-8 JSON object (``encode(record, "json")``: times in ISO 8601, bytes in
base64). Reading JSON validates with the same pydantic model as Avro, so a bad JSON record
fails with the same reasons. ``decode`` takes ``fmt``: ``"avro"`` (only the two Avro
framings), ``"json"`` (only JSON), or ``"auto"`` (the default, so that every reader accepts
both): bytes that start with an Avro header (``C3 01`` or ``00``) are Avro, anything else is
JSON. No JSON text starts with either byte, so the choice is never ambiguous.
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Literal, TypeVar

import fastavro
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form
from pydantic import ValidationError as PydanticValidationError

from distillery.errors import SerializationError, ValidationError
from schemas.records import DEFAULT_MAX_TEXT_CHARS, RECORD_TYPES, Record

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"

R = TypeVar("R", bound=Record)

WireFormat = Literal["avro", "json"]  # how a record is written
ReadFormat = Literal["auto", "avro", "json"]  # what a reader accepts

@dataclass(frozen=True)
class SchemaVersion:
    name: str  # e.g. "ticket"
    version: str  # "current" or "v1", "v2", ...
    parsed: Any
    fingerprint: bytes  # 8 bytes, little-endian, as single-object encoding writes it
    source: str = ""  # the schema's JSON text (what a Schema Registry is given)


def _load(file_name: str) -> SchemaVersion:
    text = resources.files("schemas").joinpath("avro", file_name).read_text(encoding="utf-8")
    parsed = parse_schema(json.loads(text))
    canonical = to_parsing_canonical_form(parsed)
    stem = file_name.removesuffix(".avsc")
    name, _, version = stem.partition(".")
    return SchemaVersion(
        name=name,
        version=version or "current",
        parsed=parsed,
        # CRC-64-AVRO, as the hex of its 8 little-endian bytes: what single-object encoding writes
        fingerprint=bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")),
        source=json.dumps(json.loads(text), separators=(",", ":")),
    )


@lru_cache(maxsize=1)
def _catalogue() -> tuple[dict[str, SchemaVersion], dict[bytes, SchemaVersion]]:
    current: dict[str, SchemaVersion] = {}
    by_fingerprint: dict[bytes, SchemaVersion] = {}
    folder = resources.files("schemas").joinpath("avro")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".avsc"):
            continue
        schema = _load(entry.name)
        by_fingerprint[schema.fingerprint] = schema
        if schema.version == "current":
            current[schema.name] = schema
    return current, by_fingerprint


def schema_for(name: str) -> SchemaVersion:
    """The current schema of a record type (``ticket``, ``decision``, ...)."""
    current, _ = _catalogue()
    try:
        return current[name]
    except KeyError:
        raise SerializationError(f"no Avro schema named {name!r}") from None


def schema_by_fingerprint(fingerprint: bytes) -> SchemaVersion:
    """The shipped schema version with this single-object fingerprint."""
    found = _catalogue()[1].get(fingerprint)
    if found is None:
        raise SerializationError(f"unknown schema fingerprint {fingerprint.hex()}")
    return found


def record_name_for(full_name: str) -> str | None:
    """The record type (``ticket``...) whose current schema has this Avro full name."""
    for name, schema in _catalogue()[0].items():
        if schema.parsed.get("name") == full_name:
            return name
    return None


def schema_versions() -> list[SchemaVersion]:
    """Every schema version shipped, current and older."""
    return list(_catalogue()[1].values())


def encode(record: Record, fmt: WireFormat = "avro") -> bytes:
    """A record as single-object-encoded Avro bytes, or (``fmt="json"``) as a UTF-8 JSON object."""
    if fmt == "json":
        return record.model_dump_json().encode("utf-8")
    if fmt != "avro":
        raise SerializationError(f"unknown wire format {fmt!r}; known: avro, json")
    schema = schema_for(record.avro_name)
    buffer = io.BytesIO()
    buffer.write(SINGLE_OBJECT_MAGIC)
    buffer.write(schema.fingerprint)
    try:
        fastavro.schemaless_writer(buffer, schema.parsed, record.model_dump())
    except (ValueError, TypeError, OverflowError) as exc:
        raise SerializationError(f"cannot encode {record.avro_name}: {exc}") from exc
    return buffer.getvalue()


def _writer_schema(
    data: bytes, confluent_ids: dict[int, SchemaVersion] | None
) -> tuple[SchemaVersion, int]:
    if data[:2] == SINGLE_OBJECT_MAGIC:
        if len(data) < 10:
            raise SerializationError("truncated single-object header")
        return schema_by_fingerprint(data[2:10]), 10
    if data[:1] == CONFLUENT_MAGIC and len(data) >= 5:
        (schema_id,) = struct.unpack(">I", data[1:5])
        if confluent_ids and schema_id in confluent_ids:
            return confluent_ids[schema_id], 5
        from schemas.registry import active_registry

        registry = active_registry()
        if registry is None:
            raise SerializationError(f"Confluent schema id {schema_id}, but no Schema Registry "
                                     "is configured (DISTILLERY_SCHEMA_REGISTRY_URL)")
        return registry.writer(schema_id), 5
    raise SerializationError(NOT_AVRO)


NOT_AVRO = "not Avro: no single-object or Confluent header"


def wire_format(data: bytes) -> WireFormat:
    """``avro`` when the bytes start with an Avro header (single-object or Confluent), else
    ``json``: what ``fmt="auto"`` decodes them as."""
    if data[:2] == SINGLE_OBJECT_MAGIC or data[:1] == CONFLUENT_MAGIC:
        return "avro"
    return "json"


def _check_format(data: bytes, fmt: ReadFormat) -> WireFormat:
    """The format to decode ``data`` as, or a ``SerializationError`` if ``fmt`` refuses it."""
    if not data:
        raise SerializationError("empty message")
    found = wire_format(data)
    if fmt == "auto" or fmt == found:
        return found
    if fmt == "avro":
        raise SerializationError(NOT_AVRO)
    if fmt == "json":
        raise SerializationError("not JSON: the bytes start with an Avro header")
    raise SerializationError(f"unknown format {fmt!r}; known: auto, avro, json")


def decode_dict(
    data: bytes, expected: str | None = None, confluent_ids: dict[int, SchemaVersion] | None = None
) -> tuple[str, dict[str, Any]]:
    """Bytes to (schema name, plain dict), resolved to the current schema."""
    if not data:
        raise SerializationError("empty message")
    writer, start = _writer_schema(data, confluent_ids)
    if expected is not None and writer.name != expected:
        raise SerializationError(f"expected a {expected} record, got a {writer.name} record")
    reader = schema_for(writer.name)
    try:
        value = fastavro.schemaless_reader(io.BytesIO(data[start:]), writer.parsed, reader.parsed)
    except Exception as exc:  # fastavro raises many kinds on corrupt input
        raise SerializationError(f"corrupt Avro body for {writer.name}: {exc}") from exc
    if not isinstance(value, dict):
        raise SerializationError(f"Avro body for {writer.name} is not a record")
    return writer.name, value


def decode(
    data: bytes,
    cls: type[R],
    *,
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS,
    confluent_ids: dict[int, SchemaVersion] | None = None,
    fmt: ReadFormat = "auto",
) -> R:
    """Bytes to a validated record of type ``cls``.

    ``fmt`` says which wire formats to accept (``auto``: Avro by its header, else JSON).
    Raises ``SerializationError`` for bytes that are not a ``cls`` record and
    ``ValidationError`` for a record that breaks a contract (empty id, oversized text...).
    """
    if _check_format(data, fmt) == "json":
        return _validate_json(cls, data, max_text_chars, only_json=fmt == "json")
    _, value = decode_dict(data, cls.avro_name, confluent_ids)
    return validate(cls, value, max_text_chars=max_text_chars)


def decode_any(data: bytes, confluent_ids: dict[int, SchemaVersion] | None = None) -> Record:
    """Bytes of any known record type, Avro or JSON, to a validated record.

    Avro names its schema; a JSON object is taken as the record type with the fewest fields
    among those whose fields hold all of its keys and whose required fields it has.
    """
    if _check_format(data, "auto") == "json":
        return _validate_json(_json_record_type(data), data, DEFAULT_MAX_TEXT_CHARS)
    name, value = decode_dict(data, None, confluent_ids)
    return validate(RECORD_TYPES[name], value)


def _validate_json(cls: type[R], data: bytes, max_text_chars: int, *,
                   only_json: bool = False) -> R:
    """JSON bytes to a validated ``cls``: unparseable or not an object is a
    ``SerializationError``, a contract broken a ``ValidationError`` (as for Avro)."""
    try:
        return cls.model_validate_json(data, context={"max_text_chars": max_text_chars})
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            detail = str(first["msg"]).removeprefix("Invalid JSON: ")
            what = "not JSON" if only_json else "neither Avro nor JSON"
            raise SerializationError(f"{what}: {detail}") from exc
        if not first["loc"] and first["type"] in ("model_type", "model_attributes_type"):
            raise SerializationError("JSON value is not an object") from exc
        raise ValidationError(describe_validation_error(exc)) from exc


def _json_record_type(data: bytes) -> type[Record]:
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SerializationError(f"neither Avro nor JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise SerializationError("JSON value is not an object")
    keys = set(value)
    fits = [
        cls for cls in RECORD_TYPES.values()
        if keys <= set(cls.model_fields)
        and all(name in keys for name, f in cls.model_fields.items() if f.is_required())
    ]
    if not fits:
        raise SerializationError(f"a JSON object that is no known record (keys: {sorted(keys)})")
    return min(fits, key=lambda cls: len(cls.model_fields))


def validate(
    cls: type[R], value: dict[str, Any], *, max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
) -> R:
    """A plain dict to a validated record, with one readable reason on failure."""
    try:
        return cls.model_validate(value, context={"max_text_chars": max_text_chars})
    except PydanticValidationError as exc:
        raise ValidationError(describe_validation_error(exc)) from exc


def describe_validation_error(exc: PydanticValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "record"
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def confluent_frame(schema_id: int, record: Record) -> bytes:
    """A record in Confluent's wire format (for tests and for users of a Schema Registry)."""
    body = encode(record)[10:]
    return CONFLUENT_MAGIC + struct.pack(">I", schema_id) + body
