"""The part of the fault suite that fits in CI's time: the bench's own scenarios, smaller.

Each runs real worker processes on a broker of the module's own (the broker scenario stops
and starts it). ``distillery bench faults`` runs the same code at full size.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from workers.bench.faults import (
    Rig,
    bad_models,
    broker_stop,
    malformed_input,
    sigkill_refine,
    sigkill_teacher,
    sigkill_trainer,
    teacher_outage,
    teacher_rejects,
    teacher_storm,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    rig = Rig(Path(tmp_path_factory.mktemp("faults")), print)
    rig.start()
    try:
        yield rig
    finally:
        rig.close()


def test_malformed_input_is_dead_lettered_with_its_reason_and_the_worker_lives(rig: Rig) -> None:
    result = malformed_input(rig)
    assert result.detail["wrong_or_missing"] == {}
    assert result.lost == 0 and result.dead_lettered == result.detail["kinds"] >= 10
    assert result.detail["worker_alive"]
    assert result.detail["largest_dead_letter_bytes"] < 16_384  # bounded, not the 1 MB input


def test_every_kind_of_bad_model_announcement_is_refused_and_counted(rig: Rig) -> None:
    result = bad_models(rig)
    assert result.detail["refused_and_counted"] == result.events == 6
    assert result.detail["old_version_still_serving"] and result.detail["worker_alive"]


def test_a_half_failing_teacher_dead_letters_nothing(rig: Rig) -> None:
    result = teacher_storm(rig, events=150, storm_s=15.0)
    assert result.detail["answered_500"] > 0, "the storm happened"
    assert (result.lost, result.dead_lettered) == (0, 0)


def test_a_teacher_outage_loses_and_dead_letters_nothing(rig: Rig) -> None:
    result = teacher_outage(rig, events=150, outage_s=10.0, rate=15.0)
    assert (result.lost, result.dead_lettered) == (0, 0) and result.recover_s >= 0


def test_a_broker_stop_under_every_worker_loses_nothing(rig: Rig) -> None:
    result = broker_stop(rig, events=400, stop_s=10.0)
    assert (result.lost, result.dead_lettered) == (0, 0)
    assert result.detail["trainer_store_complete"], result.detail


def test_sigkill_of_the_teacher_worker_loses_nothing(rig: Rig) -> None:
    result = sigkill_teacher(rig, events=300, rate=30.0, busy_s=2.0)
    assert (result.lost, result.dead_lettered) == (0, 0) and result.recover_s >= 0


def test_sigkill_of_the_refine_worker_loses_nothing(rig: Rig) -> None:
    result = sigkill_refine(rig, events=300, rate=30.0, busy_s=2.0)
    assert (result.lost, result.dead_lettered) == (0, 0) and result.recover_s >= 0


def test_sigkill_of_the_trainer_loses_no_verdict(rig: Rig) -> None:
    result = sigkill_trainer(rig, events=600, rate=60.0)
    assert result.lost == 0 and result.recover_s >= 0, result.detail


def test_a_teacher_refusing_everything_pauses_and_dead_letters_four(rig: Rig) -> None:
    result = teacher_rejects(rig, events=100, refuse_s=8.0)
    assert result.lost == 0 and result.recover_s >= 0
    assert result.dead_lettered == 4 and result.detail["dead_letter_kinds"] == ["rejected"]
