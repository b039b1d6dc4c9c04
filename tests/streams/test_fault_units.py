"""Loss paths of issue 14 that need no broker: dead-letter size, hot-swap refusals."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from distillery.errors import ModelError
from distillery.settings import load_settings
from distillery.tasks import TICKETS
from schemas.records import DeadLetter, ModelAnnouncement
from schemas.serde import decode, encode
from streams.decode import RawEvent, decode_event
from streams.hotswap import AnnouncementFollower, ModelHolder, inside_registry
from streams.metrics import ClassifyMetrics


def test_a_dead_letter_of_a_huge_input_is_bounded_and_identifies_it() -> None:
    value = b"\xc3\x01" + b"\xff" * (1 << 20)  # a 1 MiB "record" that is not Avro
    raw = RawEvent("tickets", 2, 7, b"k", value)
    letter = decode_event(TICKETS, raw, 20_000)
    assert isinstance(letter, DeadLetter)
    assert letter.value == value[:4096] and letter.value_size == len(value)
    assert letter.value_sha256 == hashlib.sha256(value).hexdigest()
    assert len(encode(letter)) < 8192  # always fits a producer request, unlike a whole copy
    assert decode(encode(letter), DeadLetter) == letter


class _Student:
    def __init__(self, version: str, labels: list[str]) -> None:
        self.version, self.labels = version, labels

    def predict_many(self, texts: list[str]) -> Any:
        return SimpleNamespace(probs=[[1.0 / len(self.labels)] * len(self.labels)] * len(texts))

    def routing_policy(self, fallback_floor: float) -> Any:
        raise NotImplementedError


def _announcement(version: str, uri: str = "file:///r/tickets/v") -> ModelAnnouncement:
    return ModelAnnouncement(task="tickets", version=version, uri=uri, sha256="a" * 64,
                             labels=["billing", "refunds"])


def test_offer_refuses_whatever_a_bad_model_raises_and_counts_it() -> None:
    metrics = ClassifyMetrics()

    def loader(a: ModelAnnouncement) -> Any:
        if a.version == "v2":
            raise TypeError("malformed featurizer config")  # crashed the follower before
        return _Student(a.version, ["billing", "refunds"])

    holder = ModelHolder("tickets", loader, metrics.serving,
                         lambda task: metrics.swaps_rejected.labels(task=task).inc())
    assert holder.offer(_announcement("v1"))
    assert not holder.offer(_announcement("v2"))
    assert holder.current is not None and holder.current.version == "v1"
    rejected = metrics.registry.get_sample_value("distillery_model_rejected_total",
                                                 {"task": "tickets"})
    assert rejected == 1.0


def test_only_paths_inside_the_registry_root_are_loaded(tmp_path: Path) -> None:
    settings = load_settings(registry_root=tmp_path / "registry")
    inside = (tmp_path / "registry" / "tickets" / "v0001").as_uri()
    assert inside_registry(settings, inside) == (tmp_path / "registry" / "tickets" / "v0001")
    with pytest.raises(ModelError, match="outside the registry"):
        inside_registry(settings, (tmp_path / "elsewhere" / "v0001").as_uri())
    with pytest.raises(ModelError, match="outside the registry"):
        inside_registry(settings, (tmp_path / "registry" / ".." / "x").as_uri())


def test_a_worker_whose_newest_version_cannot_load_falls_back_to_the_serving_one() -> None:
    def loader(a: ModelAnnouncement) -> Any:
        if a.version == "v9":
            raise ModelError("sha256 mismatch")
        return _Student(a.version, ["billing", "refunds"])

    holder = ModelHolder("tickets", loader, lambda task, version: None)
    follower = AnnouncementFollower(load_settings(), {"tickets": holder},
                                    fallback=lambda task: _announcement("v3"))

    async def go() -> None:
        await follower._apply(encode(_announcement("v9")))  # the newest: refused
        await follower._fall_back_where_empty()

    asyncio.run(go())
    assert holder.current is not None and holder.current.version == "v3"


class _FailingCatchUp(AnnouncementFollower):
    async def _catch_up(self, consumer: Any, tps: list[Any], end: dict[Any, int]) -> None:
        raise RuntimeError("the broker went away mid catch-up")


@pytest.mark.kafka
def test_a_catch_up_that_raises_is_not_ready_without_a_model(kafka_settings: Any) -> None:
    # Issue 29 (9): the follower set ``ready`` in a ``finally``, so a catch-up that raised
    # let the worker consume with no model: a burst of cold-start calls to the teacher.
    def loader(a: ModelAnnouncement) -> Any:
        return _Student(a.version, ["billing", "refunds"])

    def outcome(fallback: ModelAnnouncement | None) -> tuple[bool, str | None]:
        holder = ModelHolder("tickets", loader, lambda task, version: None)
        follower = _FailingCatchUp(kafka_settings, {"tickets": holder},
                                   fallback=lambda task: fallback)

        async def go() -> None:
            with pytest.raises(RuntimeError, match="mid catch-up"):
                await follower.run()

        asyncio.run(go())
        return follower.ready.is_set(), holder.current.version if holder.current else None

    assert outcome(None) == (False, None)  # nothing to serve: not ready, run_forever retries
    assert outcome(_announcement("v3")) == (True, "v3")  # the registry's version serves
