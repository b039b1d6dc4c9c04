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
    assert [(e.id, e.order) for e in examples] == [("v0", 1), ("v1", 2), ("v2", 3), ("v3", 4)]
    assert examples[0].label == "refunds"
    store.close()
