"""The trainer without Kafka: failed refreshes, feedback labels, arrival order."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from distillery.settings import load_settings
from distillery.tasks import TICKETS
from schemas.records import Feedback, TeacherVerdict
from schemas.serde import encode
from workers.trainer.consume import apply_message
from workers.trainer.store import TrainingStore
from workers.trainer.worker import TrainerWorker


def _message(value: bytes, topic: str = "t", offset: int = 0) -> Any:
    return SimpleNamespace(value=value, topic=topic, partition=0, offset=offset)


def _verdict(i: int, label: str = "billing") -> bytes:
    return encode(TeacherVerdict(id=f"v{i}", task="tickets", text=f"invoice {i}", label=label,
                                 teacher_id="oracle", reason="low_confidence"))


def test_a_failed_refresh_is_recorded_and_the_worker_goes_on(tmp_path: Path) -> None:
    def broken(store: TrainingStore, confirm: Any) -> dict[str, Any]:
        raise RuntimeError("training blew up")

    worker = TrainerWorker(load_settings(state_dir=tmp_path), TICKETS, broken)
    worker.new_verdicts = 10
    outcome = worker.run_refresh()  # used to raise and kill the worker, at every restart
    assert outcome["promoted"] is False and "training blew up" in outcome["reason"]
    [record] = worker.store.refreshes()
    assert not record["promoted"] and "RuntimeError" in record["reason"]
    assert worker.new_verdicts == 0 and not worker.due()
    worker.store.close()


def test_feedback_with_a_label_outside_the_task_is_skipped(tmp_path: Path) -> None:
    store = TrainingStore(tmp_path / "s.sqlite")
    apply_message(store, TICKETS, "verdicts", _message(_verdict(1)))
    bad = Feedback(id="v1", task="tickets", label="no_such_queue")
    good = Feedback(id="v1", task="tickets", label="refunds")
    apply_message(store, TICKETS, "feedback", _message(encode(bad), offset=1))
    assert store.counts()["feedback"] == 0
    apply_message(store, TICKETS, "feedback", _message(encode(good), offset=2))
    examples, contradicted = store.examples()
    assert [e.label for e in examples] == ["refunds"] and contradicted == 1
    store.close()


def test_arrival_order_survives_reopening_and_updates(tmp_path: Path) -> None:
    store = TrainingStore(tmp_path / "s.sqlite")
    for i in range(3):
        apply_message(store, TICKETS, "verdicts", _message(_verdict(i), offset=i))
    store.commit()
    store.close()
    store = TrainingStore(tmp_path / "s.sqlite")
    apply_message(store, TICKETS, "verdicts", _message(_verdict(3), offset=3))
    apply_message(store, TICKETS, "verdicts", _message(_verdict(0, "refunds"), offset=4))
    examples, _ = store.examples()
    assert [(e.id, e.order) for e in examples] == [("v0", 0), ("v1", 1), ("v2", 2), ("v3", 3)]
    assert examples[0].label == "refunds"
    store.close()


def test_verdicts_are_ordered_by_their_events_time_not_by_arrival(tmp_path: Path) -> None:
    """The teacher answers concurrently: verdicts arrive out of their events' order. The
    held-out window (the newest verdicts) is chosen by event time, the record timestamp the
    workers carry over; verdicts without one (an older store) come first, by arrival."""
    store = TrainingStore(tmp_path / "t.sqlite")
    arrivals = [(3, 1_003), (1, 1_001), (4, None), (2, 1_002), (0, 1_000)]
    for offset, (i, stamp) in enumerate(arrivals):
        message = _message(_verdict(i), offset=offset)
        message.timestamp = stamp
        apply_message(store, TICKETS, "verdicts", message)
    examples, _ = store.examples()
    assert [e.id for e in examples] == ["v4", "v0", "v1", "v2", "v3"]
    assert [e.order for e in examples] == [0, 1, 2, 3, 4]
    message = _message(_verdict(4, "shipping"), offset=9)  # an update takes its new time
    message.timestamp = 999
    apply_message(store, TICKETS, "verdicts", message)
    assert [e.id for e in store.examples()[0]] == ["v4", "v0", "v1", "v2", "v3"]
    message.timestamp = 1_004
    apply_message(store, TICKETS, "verdicts", message)
    assert [e.id for e in store.examples()[0]][-1] == "v4"
    store.close()


def test_the_warm_up_trains_and_loads_what_a_refresh_needs_and_keeps_nothing(
        tmp_path: Path) -> None:
    """A trainer warms up at start (a throwaway training and export, the sentence encoder
    for a cascade task) so that its first refresh does not pay a process's one-off costs;
    nothing it trains is published."""
    from models.registry import Registry
    from workers.trainer.worker import WarmRefresh, store_refresher

    settings = load_settings(state_dir=tmp_path)
    refresh = store_refresher(settings, TICKETS, [])
    assert isinstance(refresh, WarmRefresh) and TICKETS.cascade
    refresh.warm()
    assert Registry.from_settings(settings).versions(TICKETS.name) == []
    assert not list(tmp_path.rglob("*.onnx"))
    worker = TrainerWorker(settings, TICKETS, refresh)
    worker.warm_up()  # the worker's step: logs its time, never raises
    worker.store.close()
