"""The synthetic streams: deterministic, valid, rare critical labels, drift, learnable, CLI."""

from __future__ import annotations

import csv
import json
import math
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from distillery.errors import ConfigError
from distillery.tasks import MODERATION, TICKETS
from schemas.records import ModerationItem, Ticket
from workers.sim.synth import generate, label_frequencies, labels_of, tokens

N = 10_000


@pytest.fixture(scope="module")
def tickets() -> list[Ticket | ModerationItem]:
    return generate("tickets", N, seed=7)


@pytest.fixture(scope="module")
def moderation() -> list[Ticket | ModerationItem]:
    return generate("moderation", N, seed=7)


def _text(item: Ticket | ModerationItem) -> str:
    fields = TICKETS.text_fields if isinstance(item, Ticket) else MODERATION.text_fields
    return item.text_of(fields)


# ------------------------------------------------------------------------- the generator


@pytest.mark.parametrize("task", ["tickets", "moderation"])
def test_same_seed_same_stream_other_seed_other_stream(task: str) -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    first = generate(task, 300, seed=3, drift_at=0.5, start=start, rate_per_s=10)
    again = generate(task, 300, seed=3, drift_at=0.5, start=start, rate_per_s=10)
    other = generate(task, 300, seed=4, drift_at=0.5, start=start, rate_per_s=10)
    assert [i.model_dump() for i in first] == [i.model_dump() for i in again]
    assert [_text(i) for i in first] != [_text(i) for i in other]
    prefix = generate(task, 100, seed=3, start=start)
    assert prefix == generate(task, 300, seed=3, start=start)[:100]


def test_records_are_valid_typed_and_uniquely_identified(
    tickets: list[Ticket | ModerationItem], moderation: list[Ticket | ModerationItem]
) -> None:
    assert all(isinstance(i, Ticket) for i in tickets)
    assert all(isinstance(i, ModerationItem) for i in moderation)
    for items in (tickets, moderation):
        ids = [i.id for i in items]
        assert len(set(ids)) == len(ids)
        for item in items[:500]:  # constructed = validated; a JSON round trip stays equal
            assert type(item).model_validate_json(item.model_dump_json()) == item
    assert tickets[12].id == "tickets-7-0000012"
    typed = [i for i in tickets if isinstance(i, Ticket)]
    assert {i.channel for i in typed} == {"email", "chat", "web", "phone"}
    assert {i.customer_tier for i in typed} == {"free", "pro", "enterprise"}
    surfaces = {i.surface for i in moderation if isinstance(i, ModerationItem)}
    assert surfaces == {"comment", "post", "message", "review"}


def test_ticket_queue_frequencies(tickets: list[Ticket | ModerationItem]) -> None:
    freq = label_frequencies(tickets)
    assert set(freq) == set(TICKETS.label_names)
    for common in ("billing", "technical_issue", "shipping"):
        assert 0.13 <= freq[common] <= 0.22, (common, freq[common])
    for rare in TICKETS.critical_labels:
        assert 0.005 <= freq[rare] <= 0.03, (rare, freq[rare])


def test_moderation_frequencies_and_rare_critical_labels(
    moderation: list[Ticket | ModerationItem],
) -> None:
    freq = label_frequencies(moderation)
    assert set(freq) == set(MODERATION.label_names)
    assert 0.65 <= freq["ok"] <= 0.75
    for label in ("spam", "profanity", "harassment"):
        assert 0.04 <= freq[label] <= 0.12, (label, freq[label])
    assert MODERATION.critical_labels == ["self_harm", "violent_threat"]
    for label in MODERATION.critical_labels:
        assert 0.005 <= freq[label] <= 0.03, (label, freq[label])


def test_oracle_label_is_in_metadata(tickets: list[Ticket | ModerationItem]) -> None:
    assert labels_of(tickets[:5]) == [i.metadata["oracle_label"] for i in tickets[:5]]
    assert all(i.metadata["oracle_label"] in TICKETS.label_names for i in tickets)
    ambiguous = sum(i.metadata["ambiguous"] == "1" for i in tickets) / len(tickets)
    assert 0.01 <= ambiguous <= 0.06


@pytest.mark.parametrize("task", ["tickets", "moderation"])
def test_drift_shifts_vocabulary(task: str) -> None:
    items = generate(task, 4000, seed=1, drift_at=0.5)
    before, after = items[:2000], items[2000:]
    assert {i.metadata["drifted"] for i in before} == {"0"}
    assert {i.metadata["drifted"] for i in after} == {"1"}
    old = Counter(w for i in before for w in tokens(_text(i)))
    new = Counter(w for i in after for w in tokens(_text(i)))
    newcomers = {w for w, c in new.items() if c >= 20 and w not in old}
    assert len(newcomers) >= 5, newcomers
    assert ("nimbus" in newcomers) if task == "tickets" else bool(newcomers)
    plain = Counter(w for i in generate(task, 4000, seed=1) for w in tokens(_text(i)))
    assert sum(w not in plain for w in newcomers) >= 0.9 * len(newcomers)  # drift made them


def test_drift_shifts_ticket_queue_frequencies() -> None:
    items = generate("tickets", 8000, seed=2, drift_at=0.5)
    before, after = label_frequencies(items[:4000]), label_frequencies(items[4000:])
    assert after["technical_issue"] - before["technical_issue"] > 0.02
    assert before["shipping"] - after["shipping"] > 0.03


def test_created_at_spacing_and_default_now() -> None:
    start = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    items = generate("moderation", 5, start=start, rate_per_s=4)
    assert [i.created_at for i in items] == [start + timedelta(seconds=k / 4) for k in range(5)]
    before = datetime.now(UTC) - timedelta(seconds=1)
    stamps = {i.created_at for i in generate("tickets", 5)}
    assert len(stamps) == 1 and stamps.pop() >= before


@pytest.mark.parametrize(
    "kwargs",
    [{"task": "intents"}, {"n": -1}, {"drift_at": 1.0}, {"drift_at": math.nan},
     {"rate_per_s": 0.0}],
)
def test_bad_arguments_raise_config_error(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"task": "tickets", "n": 3} | kwargs
    with pytest.raises(ConfigError):
        generate(**args)  # type: ignore[arg-type]


# ------------------------------------------------------------------- learnable, not trivial


def _naive_bayes_accuracy(train: list[tuple[str, str]], test: list[tuple[str, str]]) -> float:
    prior = Counter(label for _, label in train)
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for text, label in train:
        counts[label].update(tokens(text))
    vocab = {w for c in counts.values() for w in c}
    totals = {label: sum(c.values()) + len(vocab) for label, c in counts.items()}

    def score(label: str, words: list[str]) -> float:
        c, total = counts[label], totals[label]
        return math.log(prior[label]) + sum(math.log((c[w] + 1) / total) for w in words)

    right = 0
    for text, label in test:
        words = [w for w in tokens(text) if w in vocab]
        right += max(prior, key=lambda lab: score(lab, words)) == label
    return right / len(test)


def test_a_unigram_baseline_learns_tickets_but_is_not_perfect() -> None:
    items = generate("tickets", 4000, seed=11)
    rows = list(zip([_text(i) for i in items], labels_of(items), strict=True))
    accuracy = _naive_bayes_accuracy(rows[:3000], rows[3000:])
    assert 0.75 <= accuracy <= 0.99, accuracy


def test_drift_costs_a_model_trained_before_it() -> None:
    items = generate("tickets", 6000, seed=12, drift_at=0.5)
    rows = list(zip([_text(i) for i in items], labels_of(items), strict=True))
    before = _naive_bayes_accuracy(rows[:2000], rows[2000:3000])
    after = _naive_bayes_accuracy(rows[:2000], rows[4000:5000])
    assert before - after >= 0.03, (before, after)


# ------------------------------------------------------------------------------------ CLI


def _run_cli(argv: list[str]) -> int:
    from workers.cli.main import main

    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_cli_writes_n_valid_records(tmp_path: Path) -> None:
    out = tmp_path / "tickets.jsonl"
    code = _run_cli(["generate", "--task", "tickets", "--n", "250", "--seed", "5",
                     "--drift-at", "0.4", "--out", str(out)])
    assert code == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 250
    records = [Ticket.model_validate_json(line) for line in lines]
    expected = generate("tickets", 250, seed=5, drift_at=0.4)
    assert [r.model_dump(exclude={"created_at"}) for r in records] == [
        i.model_dump(exclude={"created_at"}) for i in expected
    ]
    assert isinstance(json.loads(lines[0])["metadata"], dict)


def test_cli_labelled_csv_is_training_data(tmp_path: Path) -> None:
    out = tmp_path / "moderation.csv"
    code = _run_cli(["generate", "--task", "moderation", "--n", "120", "--labelled",
                     "--format", "csv", "--out", str(out)])
    assert code == 0
    with out.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    items = generate("moderation", 120)
    assert [r["id"] for r in rows] == [i.id for i in items]
    assert [r["text"] for r in rows] == [_text(i) for i in items]
    assert [r["label"] for r in rows] == labels_of(items)


def test_cli_record_csv_reads_back_through_produce_parser(tmp_path: Path) -> None:
    from workers.records.files import read_records

    out = tmp_path / "tickets.csv"
    assert _run_cli(["generate", "--task", "tickets", "--n", "50", "--format", "csv",
                     "--out", str(out)]) == 0
    with out.open(encoding="utf-8", newline="") as handle:
        parsed = [r for _, r in read_records(handle, "csv", Ticket, {}, 20_000)]
    assert all(isinstance(r, Ticket) for r in parsed) and len(parsed) == 50
    assert labels_of(parsed) == labels_of(generate("tickets", 50))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "args",
    [["--task", "intents", "--n", "5"], ["--task", "tickets", "--n", "0"],
     ["--task", "tickets", "--n", "5", "--format", "xml"],
     ["--task", "tickets", "--n", "5", "--drift-at", "1.5"]],
)
def test_cli_bad_arguments_are_one_line_errors(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run_cli(["generate", *args]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1
