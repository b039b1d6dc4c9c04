"""The one frozen settings object.

Values come, highest priority first, from: keyword arguments, ``DISTILLERY_*`` environment
variables, a TOML file (``DISTILLERY_CONFIG`` or ``load_settings(config_file=...)``), the
defaults below. Nothing else in distillery reads ``os.environ``: pass a ``Settings`` along.
"""

from __future__ import annotations

import os
import ssl
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from distillery.errors import ConfigError

ENV_PREFIX = "DISTILLERY_"
_CONFIG_FILE: str | None = None  # set only by load_settings(config_file=...)


def _data_home() -> Path:
    return Path.home() / ".local" / "share" / "distillery"


def _cache_home() -> Path:
    return Path.home() / ".cache" / "distillery"


class Settings(BaseSettings):
    """Every knob distillery has. Frozen: build a new one with ``model_copy(update=...)``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, extra="forbid", case_sensitive=False
    )

    # --- Kafka -------------------------------------------------------------------------
    kafka_bootstrap: str = Field("127.0.0.1:9092", description=(
        "Kafka brokers to connect to, as comma-separated host:port pairs. When it is not set, "
        "`distillery up` starts the embedded broker and uses that instead."))
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description=(
            "How clients talk to the brokers: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT (a login) or "
            "SASL_SSL (a login over TLS)."))
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description=(
            "SASL login mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512. None: no SASL login."))
    kafka_sasl_username: str | None = Field(None, description=(
        "User name of the SASL login; used when `kafka_sasl_mechanism` is set."))
    kafka_sasl_password: SecretStr | None = Field(None, description=(
        "Password of the SASL login (a secret: never shown); used when `kafka_sasl_mechanism` is "
        "set."))
    kafka_ssl_cafile: Path | None = Field(None, description=(
        "CA certificate file (PEM) that verifies the brokers' certificates, with SSL or SASL_SSL. "
        "None: the system's default CAs."))
    kafka_ssl_certfile: Path | None = Field(None, description=(
        "Client certificate file (PEM) for TLS client authentication, with SSL or SASL_SSL. None: "
        "no client certificate."))
    kafka_ssl_keyfile: Path | None = Field(None, description=(
        "Private key file (PEM) of `kafka_ssl_certfile`. None: the key is in the certificate "
        "file."))
    kafka_ssl_password: SecretStr | None = Field(None, description=(
        "Password of the client certificate's private key (a secret: never shown). None: the key "
        "is not encrypted."))
    topic_prefix: str = Field("", description=(
        "Prefix of every topic and consumer group name, so that several deployments can share one "
        "cluster. Letters, digits and `.`, `_`, `-` only; empty: no prefix."))
    topic_partitions: int = Field(6, ge=1, description=(
        "Partitions of each topic distillery creates (per task, and the dead letters), which caps "
        "how many workers of one stage share its load. Also the embedded broker's default count."))
    topic_replication: int | None = Field(None, ge=1, description=(
        "Replicas of each topic distillery creates. None: 3, or every broker of a smaller "
        "cluster."))
    topic_min_insync_replicas: int | None = Field(None, ge=1, description=(
        "Replicas a write must reach before it is acknowledged (Kafka's `min.insync.replicas`), on "
        "the topics distillery creates. None: the replication factor minus 1, at least 1."))
    kafka_idempotence: bool = Field(True, description=(
        "Makes producers idempotent, so that a retried send is never written twice."))
    topic_retention_ms: int = Field(7 * 24 * 3600 * 1000, description=(
        "How long Kafka keeps the records of the per-task and dead-letter topics distillery "
        "creates, in milliseconds (7 days by default)."))
    # --- delivery and faults ------------------------------------------------------------------
    topic_wait_s: float = Field(120.0, gt=0.0, description=(
        "How long a worker waits at start for its topics to be in the cluster's metadata, with a "
        "leader for every partition, in seconds; then it fails."))
    dead_letter_value_bytes: int = Field(4096, ge=0, description=(
        "Bytes of a bad event's payload that its dead letter keeps (the whole payload's size and "
        "SHA-256 are always recorded). 0: none of it."))
    producer_request_timeout_s: float = Field(40.0, gt=0.0, description=(
        "How long a producer keeps trying to deliver a send before it counts as failed, in "
        "seconds."))

    # --- embedded broker ---------------------------------------------------------------
    kafka_version: str = Field("4.1.1", description=(
        "Apache Kafka release the embedded broker runs; its jars are fetched with Maven into "
        "`cache_dir`, once per version."))
    broker_port: int = Field(9092, ge=1, le=65535, description=(
        "Port of the embedded broker's client listener, on 127.0.0.1."))
    broker_controller_port: int = Field(9093, ge=1, le=65535, description=(
        "Port of the embedded broker's KRaft controller listener, on 127.0.0.1."))
    broker_heap: str = Field("512m", description=(
        "Java heap of the embedded broker (both `-Xms` and `-Xmx`), in the JVM's size syntax, e.g. "
        "`512m` or `1g`."))
    broker_start_timeout_s: float = Field(90.0, description=(
        "How long to wait for the embedded broker to answer after starting it, in seconds."))
    # --- schema registry (optional) -----------------------------------------------------
    schema_registry_url: str | None = Field(None, description=(
        "A Confluent-compatible Schema Registry's base URL, e.g. `http://localhost:8081` for "
        "`distillery registry start`'s, or a hosted one's. Set: the workers register their "
        "schemas under `<topic>-value`, write Avro in Confluent's wire format (magic byte 0, "
        "the 4-byte schema id) and read any writer schema the registry holds by its id. "
        "Unset: Avro single-object encoding, no registry."))
    schema_registry_user: str | None = Field(None, description=(
        "User (or API key) for the Schema Registry's HTTP basic authentication."))
    schema_registry_password: SecretStr | None = Field(None, description=(
        "Password (or API secret) for the Schema Registry's HTTP basic authentication."))
    schema_registry_port: int = Field(8081, ge=1, le=65535, description=(
        "Port of the embedded Schema Registry (`distillery registry start`), on 127.0.0.1."))
    schema_registry_version: str = Field("2.4.2.Final", description=(
        "Apicurio Registry release the embedded Schema Registry runs; built with Maven from "
        "Maven Central into `cache_dir`, once per version."))

    state_dir: Path = Field(default_factory=_data_home, description=(
        "Folder of local state: the embedded broker's data, the workers' stores and faust's "
        "tables. Default: `~/.local/share/distillery`."))
    cache_dir: Path = Field(default_factory=_cache_home, description=(
        "Folder of downloads and derived files that can be made again: Kafka's jars, the sentence "
        "encoder, the embedding cache. Default: `~/.cache/distillery`."))

    # --- records -----------------------------------------------------------------------
    max_text_chars: int = Field(20_000, ge=1, description=(
        "Longest text a record may carry, in characters; a longer one makes the record invalid "
        "(workers dead-letter it)."))
    tasks_file: Path | None = Field(None, description=(
        "TOML file of tasks that add to or replace the built-in ones. None: the built-in tasks "
        "only."))

    # --- student and registry ----------------------------------------------------------
    registry_root: Path = Field(default_factory=lambda: _data_home() / "registry", description=(
        "Folder of the model registry: each task's versions and which one serves. Default: "
        "`~/.local/share/distillery/registry`."))
    student_buckets: int = Field(1 << 18, ge=1024, description=(
        "Hash buckets of the n-gram student's features (rows of its embedding table), for versions "
        "trained from now on."))
    student_dim: int = Field(64, ge=4, description=(
        "Embedding width of the n-gram student, for versions trained from now on."))
    student_max_ids: int = Field(160, ge=8, description=(
        "Most n-gram features the student reads of one text; a longer text keeps all its words, "
        "then a stable sample of the rest. For versions trained from now on."))
    student_threads: int = Field(1, ge=1, description=(
        "CPU threads of each loaded student model (onnxruntime intra-op threads), and of tier 2's "
        "training."))
    embed_precision: Literal["int8", "float32"] = Field("int8", description=(
        "Number format of tier 2's sentence encoder: `int8` (MatMul weights quantised per channel "
        "by onnxruntime's dynamic quantisation) or `float32`."))
    embed_threads: int = Field(2, ge=1, description=(
        "onnxruntime intra-op threads of tier 2's sentence encoder (refine worker, trainer, "
        "backtest)."))
    accuracy_target: float = Field(0.93, gt=0.0, le=1.0, description=(
        "The one policy knob: the accuracy, as a fraction, that what a student decides alone must "
        "reach. Thresholds are calibrated to meet it with the fewest teacher calls; higher means "
        "more calls."))
    critical_catch_target: float = Field(0.95, gt=0.0, le=1.0, description=(
        "Catch rate each critical label must reach, as a fraction: the share of its items that "
        "reach the teacher or are decided correctly. Its routing floor is calibrated to it."))
    critical_floor_conservative: float = Field(0.05, ge=0.0, le=1.0, description=(
        "Routing floor of a critical label with too few held-out items to calibrate one, when "
        "none of them needed a floor to be caught: an item whose probability of that label "
        "reaches it goes to the teacher. Where some did, the floor is lower (a tolerance limit "
        "on their probabilities), or the stage decides nothing while they are too few."))
    min_critical_examples: int = Field(3, ge=0, description=(
        "Training examples every critical label needs before any version may serve. 0: no "
        "minimum."))
    min_class_support: int = Field(20, ge=1, description=(
        "Held-out items a class must be predicted for to get its own acceptance threshold; rarer "
        "classes share one."))
    verdict_memory: bool = Field(True, description=(
        "Gives tier 2 a verdict memory: its head's probabilities are mixed with the vote of the "
        "nearest training verdicts within a calibrated radius. For versions trained from now on."))
    suspect_verdicts: bool = Field(True, description=(
        "Holds out of a refresh (neither trained on nor used to calibrate) a verdict whose nearest "
        "labelled neighbours mostly agree on another label. Only for tasks that run tier 2."))
    calibration_z: float = Field(1.0, ge=0.0, description=(
        "z of the Wilson bounds calibration and the gate put on accuracy and catch rate (the catch "
        "rate's is at least 1.645); higher is more cautious. 0: the plain estimates."))
    calibration_cross_fit: bool = Field(False, description=(
        "Cross-fits calibration: thresholds chosen on one half of the held-out items are judged on "
        "the other (both ways round), and the internal target rises until that accuracy meets "
        "`accuracy_target`."))
    min_calibration: int = Field(50, ge=1, description=(
        "Held-out verdicts wanted per refresh to calibrate and gate on: at least this many of the "
        "newest are held out while half of them remain to train on."))
    gate_tolerance: float = Field(0.01, ge=0.0, description=(
        "A candidate that misses a target may still replace the serving version if its decided "
        "accuracy is at most this much lower (a fraction)."))
    critical_escape_tolerance: float = Field(0.02, ge=0.0, description=(
        "How much a critical label's escape rate (its items decided as another label) may rise, as "
        "a fraction, over the serving version or the earlier stages before the gate rejects a "
        "candidate."))
    pipeline_cost_per_day: float = Field(5.0, ge=0.0, description=(
        "Running cost of the pipeline (broker and workers) a day, in dollars; the backtest weighs "
        "it against the teacher cost saved to say whether distillation pays."))
    registry_keep: int = Field(5, ge=1, description=(
        "Newest versions of each task (and stage) that a prune keeps, besides the serving one and "
        "those a rollback returns to; the trainer prunes after every refresh."))
    model_store: Literal["file", "kafka"] = Field("file", description=(
        "Where announced model files live: `file` (the registry folder, one host or a shared "
        "volume) or `kafka` (chunked on the compacted `models.blobs` topic: every host can fetch "
        "them). Set it on every host."))

    # --- stream processors -------------------------------------------------------------
    batch_size: int = Field(256, ge=1, description=(
        "Most events a worker fetches at once: the classify worker's batch is up to 16 such "
        "fetches, the refine worker's at most this many events."))
    batch_within_s: float = Field(0.02, gt=0.0, description=(
        "How long the refine worker waits for a batch to fill, in seconds."))
    audit_rate: float = Field(0.02, ge=0.0, le=1.0, description=(
        "Share of the items a student decides that also go to the teacher as audits (chosen by "
        "id), as a fraction; a task's `policy.audit_rate` overrides it. 0: no audits."))
    critical_floor: float = Field(0.2, ge=0.0, le=1.0, description=(
        "Routing floor of a critical label the serving model has no calibrated floor for: an item "
        "whose probability of it reaches this goes to the teacher. A task's "
        "`policy.critical_floor` overrides it."))
    web_port: int = Field(6066, ge=1, le=65535, description=(
        "Port of the classify worker's web server, which serves `/metrics`; `distillery up` gives "
        "further classify workers the next ports."))
    web_host: str = Field("127.0.0.1", description=(
        "Address the classify worker's web server listens on."))
    metrics_port: int = Field(9464, ge=0, le=65535, description=(
        "Port on which the refine, teacher and trainer workers serve Prometheus `/metrics`. 0: "
        "off."))

    # --- teacher -----------------------------------------------------------------------
    teacher_kind: Literal["openai", "recorded", "oracle"] = Field("openai", description=(
        "Which teacher labels items: `openai` (an OpenAI-compatible chat-completions endpoint), "
        "`recorded` (past verdicts from a file) or `oracle` (the item's `metadata.oracle_label`, "
        "for simulations and demos)."))
    teacher_base_url: str = Field("https://api.openai.com/v1", description=(
        "Base URL of the OpenAI-compatible API the `openai` teacher calls."))
    teacher_model: str = Field("gpt-4o-mini", description="Model the `openai` teacher asks for.")
    teacher_api_key: SecretStr | None = Field(None, description=(
        "API key the `openai` teacher sends as a bearer token (a secret: never shown). None: no "
        "key is sent."))
    teacher_recorded_path: Path | None = Field(None, description=(
        "CSV or JSONL file of past verdicts (`label`, with `id` or the exact `text`) that the "
        "`recorded` teacher answers from; required with it."))
    oracle_cost_per_call: float = Field(0.0, ge=0.0, description=(
        "Notional price of one call to the simulated `oracle` teacher, in dollars. 0: free."))
    teacher_timeout_s: float = Field(30.0, gt=0.0, description=(
        "How long one call to the teacher may take before it fails as a timeout (and is retried), "
        "in seconds."))
    teacher_concurrency: int = Field(4, ge=1, description=(
        "Most calls one teacher worker has in flight at once."))
    teacher_max_retries: int = Field(4, ge=0, description=(
        "Retries of a retriable failure (timeout, connection error, HTTP 429 or 5xx) with a "
        "doubling delay; after them the item keeps retrying at the longest delay."))
    teacher_backoff_s: float = Field(0.5, ge=0.0, description=(
        "Delay before the first retry of a retriable failure, in seconds; it doubles with each "
        "retry (with jitter, at most 30 s). 0: retry at once."))
    teacher_breaker_failures: int = Field(5, ge=1, description=(
        "Consecutive availability failures (timeouts, connection errors, HTTP 429 or 5xx) that "
        "open the circuit breaker: calls stop until a probe succeeds."))
    teacher_breaker_reset_s: float = Field(30.0, gt=0.0, description=(
        "How long the open circuit breaker waits before it lets one probe call through, in "
        "seconds."))
    teacher_breaker_rejections: int = Field(5, ge=1, description=(
        "Consecutive refusals of one kind (HTTP 4xx, no valid label) that open the circuit "
        "breaker: items refused that way then wait instead of being dead-lettered."))
    teacher_give_up_tries: int = Field(8, ge=1, description=(
        "Tries after which an item that keeps failing retriably is given up on and escalated, once "
        "its failures have also lasted `teacher_give_up_s` (open-breaker probes not counted)."))
    teacher_give_up_s: float = Field(300.0, ge=0.0, description=(
        "How long an item must have kept failing retriably, in seconds, besides "
        "`teacher_give_up_tries` tries, before it is given up on and escalated."))
    teacher_contradiction_confidence: float = Field(0.9, gt=0.0, le=1.0, description=(
        "An LLM answer that overrules the student's guess of a critical label held at this "
        "confidence or more is escalated to a human, not trained on."))
    teacher_calls_per_minute: float = Field(600.0, gt=0.0, description=(
        "Most teacher calls for a task in any 60 s, shared by all its teacher workers; when they "
        "are spent, items wait in Kafka."))
    teacher_cost_per_hour: float = Field(50.0, gt=0.0, description=(
        "Most teacher spend for a task in any hour, in dollars, shared by all its teacher workers; "
        "when it is spent, items wait in Kafka."))
    teacher_price_in_per_mtok: float = Field(0.15, ge=0.0, description=(
        "Price of a million input (prompt) tokens of the teacher model, in dollars; it prices each "
        "call for the budget and the reports."))
    teacher_price_out_per_mtok: float = Field(0.60, ge=0.0, description=(
        "Price of a million output (completion) tokens of the teacher model, in dollars; it prices "
        "each call for the budget and the reports."))

    # --- trainer -----------------------------------------------------------------------
    refresh_every_verdicts: int = Field(500, ge=1, description=(
        "Most new verdicts between two refreshes, once the step has grown from "
        "`refresh_first_verdicts`."))
    refresh_first_verdicts: int = Field(50, ge=1, description=(
        "New verdicts that trigger the first refresh after a cold start; the step then doubles "
        "(50, 100, 200, ...) up to `refresh_every_verdicts`."))
    refresh_every_minutes: float = Field(10.0, gt=0.0, description=(
        "A refresh also runs once this many minutes have passed since the last one, if there is a "
        "new verdict."))

    @field_validator("schema_registry_url")
    @classmethod
    def _registry_url_is_http(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"the Schema Registry URL must start with http:// or https:// "
                             f"(got {value!r})")
        return value.rstrip("/")

    @field_validator("topic_prefix")
    @classmethod
    def _prefix_is_topic_safe(cls, value: str) -> str:
        bad = [c for c in value if not (c.isalnum() or c in "._-")]
        if bad:
            raise ValueError(
                f"topic prefix may hold only letters, digits and . _ - (got {value!r})"
            )
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = _CONFIG_FILE or os.environ.get(ENV_PREFIX + "CONFIG")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(toml_file)))
        return tuple(sources)

    # --- derived -----------------------------------------------------------------------
    def topic(self, name: str) -> str:
        """A catalogue topic name with this deployment's prefix."""
        return f"{self.topic_prefix}{name}"

    @property
    def schema_registry_dir(self) -> Path:
        """The embedded Schema Registry's built application (``quarkus-app``)."""
        return self.cache_dir / "schema-registry" / self.schema_registry_version

    @property
    def kafka_jar_dir(self) -> Path:
        return self.cache_dir / "kafka" / self.kafka_version

    @property
    def broker_dir(self) -> Path:
        return self.state_dir / "broker"

    def _sasl_kwargs(self) -> dict[str, Any]:
        """SASL keywords, spelled the same by kafka-python and aiokafka."""
        if not self.kafka_sasl_mechanism:
            return {}
        return {"sasl_mechanism": self.kafka_sasl_mechanism,
                "sasl_plain_username": self.kafka_sasl_username,
                "sasl_plain_password": _reveal(self.kafka_sasl_password)}

    @property
    def kafka_uses_ssl(self) -> bool:
        return self.kafka_security_protocol in ("SSL", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context of the SSL settings (aiokafka and faust take a context, not files)."""
        context = ssl.create_default_context(cafile=_str(self.kafka_ssl_cafile))
        if self.kafka_ssl_certfile:
            context.load_cert_chain(str(self.kafka_ssl_certfile), _str(self.kafka_ssl_keyfile),
                                    _reveal(self.kafka_ssl_password))
        return context

    def faust_credentials(self) -> Any:
        """The security settings as faust's ``broker_credentials`` (None for PLAINTEXT)."""
        import faust

        context = self.ssl_context() if self.kafka_uses_ssl else None
        if self.kafka_sasl_mechanism:
            return faust.SASLCredentials(
                username=self.kafka_sasl_username, password=_reveal(self.kafka_sasl_password),
                mechanism=self.kafka_sasl_mechanism, ssl_context=context)
        return faust.SSLCredentials(context) if context is not None else None

    def kafka_python_kwargs(self) -> dict[str, Any]:
        """Connection kwargs for kafka-python clients (admin, producer, consumer)."""
        kw: dict[str, Any] = {
            "bootstrap_servers": self.kafka_bootstrap.split(","),
            "security_protocol": self.kafka_security_protocol,
            **self._sasl_kwargs(),
        }
        if self.kafka_uses_ssl:
            kw.update(ssl_cafile=_str(self.kafka_ssl_cafile),
                      ssl_certfile=_str(self.kafka_ssl_certfile),
                      ssl_keyfile=_str(self.kafka_ssl_keyfile),
                      ssl_password=_reveal(self.kafka_ssl_password))
        return kw

    def kafka_python_producer_kwargs(self) -> dict[str, Any]:
        """``kafka_python_kwargs`` for a producer: acks from every in-sync replica, and
        idempotent (``kafka_idempotence``)."""
        return {**self.kafka_python_kwargs(), "acks": "all",
                "enable_idempotence": self.kafka_idempotence}

    def aiokafka_producer_kwargs(self) -> dict[str, Any]:
        """``aiokafka_kwargs`` for a producer: acks from every in-sync replica, and
        idempotent (``kafka_idempotence``)."""
        return {**self.aiokafka_kwargs(), "acks": "all",
                "enable_idempotence": self.kafka_idempotence}

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Connection kwargs for aiokafka clients (the library under faust)."""
        kw: dict[str, Any] = {
            "bootstrap_servers": self.kafka_bootstrap,
            "security_protocol": self.kafka_security_protocol,
            **self._sasl_kwargs(),
        }
        if self.kafka_uses_ssl:
            kw["ssl_context"] = self.ssl_context()
        return kw


def _reveal(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


def _str(path: Path | None) -> str | None:
    return str(path) if path is not None else None


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings, turning pydantic's multi-line report into one ``ConfigError`` line."""
    global _CONFIG_FILE
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"config file not found: {config_file}")
    _CONFIG_FILE = str(config_file) if config_file is not None else None
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise ConfigError(
            f"bad setting {ENV_PREFIX}{where.upper()}: {first['msg']}"
        ) from exc
    finally:
        _CONFIG_FILE = None


@lru_cache(maxsize=1)
def default_settings() -> Settings:
    """The process-wide settings from the environment (cached)."""
    return load_settings()


def setting_env_names() -> set[str]:
    """Every environment variable name the settings object understands."""
    return {ENV_PREFIX + name.upper() for name in Settings.model_fields} | {ENV_PREFIX + "CONFIG"}


def child_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment for a child process that must see exactly these settings.

    The parent's environment without its ``DISTILLERY_*`` variables, then every setting that
    differs from its default as ``DISTILLERY_<NAME>``, then ``extra``.
    """
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(ENV_PREFIX)}
    defaults = Settings.model_construct()
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is None or value == getattr(defaults, name, object()):
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[ENV_PREFIX + name.upper()] = str(value)
    env.update(extra)
    return env
