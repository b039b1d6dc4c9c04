"""Tasks as configuration.

A task names its input topic and record schema, the fields that make its text, its labels
(name, description, critical or not), the teacher's instructions, its results topic, its
routing policy, its student tiers and its wire formats: ``input_format`` (``auto``, the
default: Avro when the bytes carry an Avro header, else JSON; or only ``avro``, only ``json``) and
``output_format`` of its results topic (``avro``, the default, or ``json`` so that any
Kafka client can read the decisions). ``tiers`` lists the student tiers: ``["ngram"]`` (the
default: the hashed n-gram student alone) or ``["ngram", "embed"]`` (tier 1's undecided,
non-critical items go to ``<task>.refine``, where sentence embeddings and a small head decide
or forward to the teacher). ``redact`` lists the kinds of personal data taken out of every
input's text before the student, the teacher or any topic sees it (``distillery.redact``:
``email``, ``phone``, ``card``, ``iban``, ``ip``, ``url``; none by default), phone numbers
written nationally read for ``redact_region`` (default ``US``). Two tasks are built in
(``tickets`` and ``moderation``); a TOML file named by ``DISTILLERY_TASKS_FILE`` adds tasks
or replaces built-in ones, e.g.::

    [tasks.intents]
    schema = "text"
    instructions = "Classify the banking customer's message by intent."
    labels = [
      { name = "card_lost", description = "Card lost or stolen", critical = true },
      { name = "balance", description = "Asks for a balance" },
    ]

A table for a built-in task without ``labels`` changes only the keys it gives, e.g.
``[tasks.tickets]`` with ``output_format = "json"``; with ``labels`` it replaces the task.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from distillery.errors import ConfigError
from distillery.redact import RedactKind, Redactor, check_region, redactor
from distillery.settings import Settings

SchemaName = Literal["ticket", "moderation", "text"]
InputFormat = Literal["auto", "avro", "json"]  # what the classify worker accepts
OutputFormat = Literal["avro", "json"]  # how decisions are written on the results topic
Tier = Literal["ngram", "embed"]  # the student tiers a task can run, in cascade order
# every task's tiers and the backtest's unless told otherwise: the cascade (docs: the
# decision record "The cascade by default")
DEFAULT_TIERS: tuple[Tier, ...] = ("ngram", "embed")

_TEXT_FIELDS: dict[str, list[str]] = {
    "ticket": ["subject", "body"],
    "moderation": ["text"],
    "text": ["text"],
}


class LabelSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    description: str = ""
    critical: bool = False


class RoutingPolicy(BaseModel):
    """How the classify worker routes a task's events; ``None`` means the global setting."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    audit_rate: float | None = Field(None, ge=0.0, le=1.0)
    critical_floor: float | None = Field(None, ge=0.0, le=1.0)
    fallback: bool = False  # decide with the student's guess when the teacher is down
    deadline_s: float = Field(300.0, gt=0.0)  # how long a request waits before fallback


class TaskConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_-]+$")
    schema_name: SchemaName = Field("text", alias="schema")
    input_topic: str = ""
    results_topic: str = ""
    text_fields: list[str] = Field(default_factory=list)
    labels: list[LabelSpec] = Field(min_length=2)
    instructions: str = "Classify the item into exactly one of the labels."
    policy: RoutingPolicy = Field(default_factory=lambda: RoutingPolicy())
    input_format: InputFormat = "auto"
    output_format: OutputFormat = "avro"
    tiers: list[Tier] = Field(default_factory=lambda: list(DEFAULT_TIERS))
    # personal data replaced by placeholders before the text leaves the classify worker;
    # off by default: the built-in tasks' synthetic streams carry none
    redact: list[RedactKind] = Field(default_factory=list)
    redact_region: str = "US"  # phonenumbers' region for numbers written without +country

    @model_validator(mode="after")
    def _fill_defaults(self) -> TaskConfig:
        names = [label.name for label in self.labels]
        if len(set(names)) != len(names):
            raise ValueError(f"task {self.name}: duplicate label names")
        if not self.tiers or self.tiers[0] != "ngram" or len(set(self.tiers)) != len(self.tiers):
            raise ValueError(f"task {self.name}: tiers must start with 'ngram', without "
                             "repeats, e.g. [\"ngram\", \"embed\"]")
        if self.redact:
            object.__setattr__(self, "redact_region", check_region(self.redact_region))
        if not self.input_topic:
            object.__setattr__(self, "input_topic", self.name)
        if not self.results_topic:
            default = {"tickets": "tickets.routed"}.get(self.name, f"{self.name}.decisions")
            object.__setattr__(self, "results_topic", default)
        if not self.text_fields:
            object.__setattr__(self, "text_fields", list(_TEXT_FIELDS[self.schema_name]))
        return self

    @property
    def label_names(self) -> list[str]:
        return [label.name for label in self.labels]

    @property
    def critical_labels(self) -> list[str]:
        return [label.name for label in self.labels if label.critical]

    @property
    def redactor(self) -> Redactor | None:
        """The task's ``Redactor``, or None when it redacts nothing."""
        if not self.redact:
            return None
        return redactor(tuple(self.redact), self.redact_region)

    @property
    def teacher_topic(self) -> str:
        return f"{self.name}.teacher"

    @property
    def verdicts_topic(self) -> str:
        return f"{self.name}.verdicts"

    @property
    def feedback_topic(self) -> str:
        return f"{self.name}.feedback"

    @property
    def refine_topic(self) -> str:
        """``<task>.refine``: what tier 1 leaves to tier 2 (when ``tiers`` has ``embed``)."""
        return f"{self.name}.refine"

    @property
    def cascade(self) -> bool:
        return "embed" in self.tiers


def _labels(*items: tuple[str, str] | tuple[str, str, bool]) -> list[LabelSpec]:
    return [LabelSpec(name=i[0], description=i[1], critical=len(i) > 2 and bool(i[-1]))
            for i in items]


TICKETS = TaskConfig(
    name="tickets",
    schema="ticket",
    instructions=(
        "You route customer support tickets. Read the ticket and answer with the one queue "
        "that should handle it."
    ),
    labels=_labels(
        ("billing", "Charges, invoices, payment methods, pricing questions"),
        ("refunds", "Requests for money back on a charge or order"),
        ("account_access", "Cannot log in, locked account, two-factor problems"),
        ("password_reset", "Forgotten password or reset link problems"),
        ("shipping", "Where is my order, delivery delays, tracking"),
        ("returns", "Sending an item back, return labels, exchanges"),
        ("technical_issue", "The product or app does not work as expected"),
        ("bug_report", "A reproducible defect in the software"),
        ("feature_request", "Asks for new functionality"),
        ("cancellation", "Wants to cancel a subscription or an order"),
        ("data_privacy", "Data export, deletion, GDPR and privacy requests", True),
        ("security_incident", "Account takeover, fraud, suspicious activity", True),
    ),
)

MODERATION = TaskConfig(
    name="moderation",
    schema="moderation",
    instructions=(
        "You moderate user content. Answer with the one category that best describes the "
        "text; use 'ok' when nothing is wrong with it."
    ),
    labels=_labels(
        ("ok", "Acceptable content"),
        ("spam", "Advertising, scams, repeated promotional content"),
        ("profanity", "Swearing or vulgar language not aimed at a person"),
        ("harassment", "Insults or bullying aimed at a person"),
        ("hate_speech", "Attacks on a group for a protected characteristic"),
        ("misinformation", "False claims presented as fact"),
        ("self_harm", "Intent or encouragement of self-harm or suicide", True),
        ("violent_threat", "A threat of violence against a person or place", True),
    ),
)

BUILTIN_TASKS: dict[str, TaskConfig] = {t.name: t for t in (TICKETS, MODERATION)}


def load_tasks(settings: Settings) -> dict[str, TaskConfig]:
    """The built-in tasks, updated with those of ``settings.tasks_file`` if it is set."""
    tasks = dict(BUILTIN_TASKS)
    if settings.tasks_file is None:
        return tasks
    path = Path(settings.tasks_file)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"tasks file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"tasks file {path} is not valid TOML: {exc}") from exc
    for name, body in (raw.get("tasks") or {}).items():
        if name in BUILTIN_TASKS and "labels" not in body:  # change a built-in task
            base = BUILTIN_TASKS[name]
            body = {**base.model_dump(by_alias=True, include=base.model_fields_set), **body}
            body.pop("name", None)
        try:
            tasks[name] = TaskConfig(name=name, **body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"tasks file {path}, task {name}: {where}: {first['msg']}") from exc
    return tasks


def resolve_tasks(settings: Settings, names: Iterable[str] | None) -> list[TaskConfig]:
    """The named tasks in the given order, or every task (sorted by name) when none is named.

    The one place an unknown task name becomes an error: a ``ConfigError`` naming the
    unknown ones and the known ones.
    """
    tasks = load_tasks(settings)
    wanted = list(names or sorted(tasks))
    unknown = [n for n in wanted if n not in tasks]
    if unknown:
        raise ConfigError(f"unknown task {', '.join(repr(n) for n in unknown)}; "
                          f"known: {', '.join(sorted(tasks))}")
    return [tasks[n] for n in wanted]


def get_task(settings: Settings, name: str) -> TaskConfig:
    """One task by name (see ``resolve_tasks``)."""
    return resolve_tasks(settings, [name])[0]
