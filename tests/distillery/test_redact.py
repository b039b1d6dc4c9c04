"""Redaction: recall on a corpus of personal data, clean tickets left alone, the task's
configuration, and the one place every input passes through (``streams.decode``)."""

from __future__ import annotations

from collections import Counter

import pytest

from distillery.errors import ConfigError
from distillery.redact import PLACEHOLDERS, REDACT_KINDS, Redactor, find
from distillery.settings import load_settings
from distillery.tasks import TaskConfig, load_tasks
from schemas.records import TextItem
from schemas.serde import encode
from streams.decode import Item, RawEvent, decode_event
from tests.distillery.pii_corpus import clean_tickets, pii_samples

ALL = Redactor(REDACT_KINDS)


def test_the_pii_corpus_is_redacted_with_recall_099_per_kind() -> None:
    samples = pii_samples(per_kind=100)
    assert len(samples) >= 200
    found, total = Counter[str](), Counter[str]()
    for sample in samples:
        out = ALL(sample.text)
        total[sample.kind] += 1
        if sample.value not in out.text and PLACEHOLDERS[sample.kind] in out.text:
            found[sample.kind] += 1
    recall = {kind: found[kind] / total[kind] for kind in total}
    assert set(recall) == set(REDACT_KINDS)
    assert min(recall.values()) >= 0.99, recall


def test_clean_tickets_are_left_unchanged() -> None:
    texts = clean_tickets()
    assert len(texts) >= 200
    changed = [t for t in texts if ALL(t).text != t]
    assert len(changed) / len(texts) <= 0.01, changed[:5]


def test_a_redactor_finds_only_its_kinds_and_counts_them() -> None:
    text = "mail a.b@example.com, call +44 20 7946 0958, card 4111 1111 1111 1111"
    only_mail = Redactor(["email"])(text)
    assert only_mail.text == ("mail [EMAIL], call +44 20 7946 0958, card 4111 1111 1111 1111")
    assert only_mail.counts == {"email": 1}
    every = ALL(text)
    assert every.text == "mail [EMAIL], call [PHONE], card [CARD]"
    assert every.counts == {"email": 1, "phone": 1, "card": 1}


def test_redacting_twice_changes_nothing_more() -> None:
    for sample in pii_samples(per_kind=20, seed=3):
        once = ALL(sample.text)
        assert ALL(once.text).text == once.text
        assert not ALL(once.text).counts


def test_the_longer_find_wins_an_overlap() -> None:
    spans = find("see https://x.example.com/u?mail=a@b.com now", ["email", "url"])
    assert [s.kind for s in spans] == ["url"]
    assert ALL("from 18.196.187.194 today").text == "from [IP] today"  # not a phone
    # a CVV after the number is not part of the card
    assert ALL("4111 1111 1111 1111 123").text == "[CARD] 123"


def test_near_misses_are_left_alone() -> None:
    for text in ["card 4111 1111 1111 1112", "IBAN DE89 3704 0044",
                 "version 1.2.3", "at 10:30:00", "SKU 25294669-29", "999.1.1.1"]:
        assert ALL(text).text == text, text


def test_a_task_lists_what_it_redacts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    base = {"name": "t", "labels": [{"name": "a"}, {"name": "b"}]}
    assert TaskConfig(**base).redactor is None  # off unless asked
    task = TaskConfig(**base, redact=["email", "card"], redact_region="gb")
    assert task.redact_region == "GB"
    assert task.redactor is not None and task.redactor.kinds == ("email", "card")
    tasks_file = tmp_path / "tasks.toml"
    tasks_file.write_text('[tasks.tickets]\nredact = ["email", "fax"]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="redact"):
        load_tasks(load_settings(tasks_file=tasks_file))
    tasks_file.write_text('[tasks.tickets]\nredact = ["phone"]\nredact_region = "XX"\n',
                          encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown phone region 'XX'"):
        load_tasks(load_settings(tasks_file=tasks_file))
    tasks_file.write_text('[tasks.tickets]\nredact = ["phone", "email"]\n', encoding="utf-8")
    tickets = load_tasks(load_settings(tasks_file=tasks_file))["tickets"]
    assert tickets.redact == ["phone", "email"] and len(tickets.labels) == 12


def test_decoding_redacts_the_text_and_the_metadata() -> None:
    task = TaskConfig(name="t", labels=[{"name": "a"}, {"name": "b"}],  # type: ignore[list-item]
                      redact=["email", "phone"])
    record = TextItem(id="1", created_at=0, text="I am ann@example.com, (415) 555-2671",
                      metadata={"from": "ann@example.com", "oracle_label": "a"})
    decoded = decode_event(task, RawEvent("t", 0, 5, b"1", encode(record)), 20_000)
    assert isinstance(decoded, Item)
    assert decoded.text == "I am [EMAIL], [PHONE]"
    assert decoded.record.metadata == {"from": "[EMAIL]", "oracle_label": "a"}
    assert decoded.redactions == {"email": 2, "phone": 1}
    plain = decode_event(task.model_copy(update={"redact": []}),
                         RawEvent("t", 0, 5, b"1", encode(record)), 20_000)
    assert isinstance(plain, Item) and "ann@example.com" in plain.text
