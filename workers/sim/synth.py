"""Synthetic streams for the built-in tasks: support tickets and moderation items.

``generate("tickets", 1000, seed=1)`` gives 1000 ``Ticket`` records; ``generate("moderation",
...)`` gives ``ModerationItem`` records. Every item carries its true label in
``metadata["oracle_label"]`` (what the ``oracle`` teacher answers) and an id
``f"{task}-{seed}-{i:07d}"``. Item ``i`` depends only on (task, seed, i, drifted or not), so a
stream is reproducible for a seed and a shorter stream is a prefix of a longer one (with the
same drift point).

Tickets: the twelve queues of ``distillery.tasks.TICKETS`` with very different frequencies
(billing, technical_issue and shipping ~16-18% each; data_privacy and security_incident, the
critical ones, ~1.5% each). Text is built from per-queue subject and sentence templates with
slot fillers (products, order numbers, amounts, dates, names), openers, closers, off-topic
filler and typos. Related queues share wording (billing/refunds, account_access/
password_reset, technical_issue/bug_report, shipping/returns, ...): an item may use a
sentence of the shared wording, a quarter mention a secondary issue of the sibling queue
(the label is the main issue, which the subject usually names), and about 4% are
*ambiguous*, written only in the shared wording: the label is right, but the text cannot tell
it from its sibling. Naive Bayes over word unigrams/bigrams reaches 0.93-0.96 accuracy on a
3000/1000 split and ~0.96 on 16000/4000: learnable, not 1.0.

Moderation: the labels of ``distillery.tasks.MODERATION``; ``ok`` ~70%, spam, profanity and
harassment 6-9%, hate_speech and misinformation ~2.5%, the critical self_harm and
violent_threat ~1.5% each. Short social-media texts, with hard negatives among ``ok`` ("this
homework is killing me") and ~4% ambiguous items written in wording two labels share
(naive Bayes: ~0.98). The wording is tame: placeholder insults and fictional groups.

Drift (``drift_at=f`` in [0, 1)): items from index ``floor(f * n)`` on are *drifted* (their
``metadata["drifted"]`` is ``"1"``): new product names, apps, plans and error codes replace the
old fillers; new chat-style openers and closers; each label gains new phrasings (60% of
drifted items use one in place of an old sentence); and the label frequencies shift
(tickets: more technical_issue, bug_report, cancellation and security_incident, less
shipping and billing; moderation: more spam, with crypto/AI-bot vocabulary, and more
misinformation). A bag-of-n-grams model trained before the drift loses about 9 points of
accuracy on drifted tickets and 6 on drifted moderation items.

Timestamps: with ``rate_per_s``, item ``i`` is created at ``start + i / rate_per_s`` (``start``
defaults to now); with only ``start``, every item is created at ``start``; otherwise every
item is created at one "now".
"""

from __future__ import annotations

import logging
import math
import random
import string
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from distillery.errors import ConfigError
from schemas.records import InputRecord, ModerationItem, Ticket
from workers.sim import vocab as V

log = logging.getLogger(__name__)

TASKS: tuple[str, ...] = ("tickets", "moderation")
AMBIGUOUS_RATE = 0.04  # items written only in the wording their label shares with a sibling
SHARED_SENTENCE_RATE = 0.3  # tickets with one sentence of the wording shared with the sibling
SECOND_ISSUE_RATE = 0.25  # tickets that also mention a secondary issue of the sibling queue
GENERIC_SUBJECT_RATE = 0.2
DRIFT_PHRASING_RATE = 0.6  # drifted items whose first sentence uses a new phrasing
GENERIC_SUBJECTS = ("Help needed", "Question", "Urgent", "Issue with my account", "Support",
                    "Please help", "Problem")
TYPO_ITEM_RATE = 0.25
TYPO_WORD_RATE = 0.04

SynthItem = Ticket | ModerationItem


@dataclass(frozen=True)
class _Ctx:
    """What one item is generated from."""

    rng: random.Random
    drifted: bool


# ------------------------------------------------------------------------------- helpers


def _pick_weighted(rng: random.Random, weights: dict[str, float]) -> str:
    names = list(weights)
    return rng.choices(names, weights=[weights[n] for n in names], k=1)[0]


class _Slots(dict[str, str]):
    """Fills ``{slot}`` placeholders lazily; a slot keeps its value within one item."""

    def __init__(self, ctx: _Ctx, pools: dict[str, list[str]],
                 drift_pools: dict[str, list[str]]) -> None:
        super().__init__()
        self._ctx = ctx
        self._pools = pools
        self._drift = drift_pools

    def __missing__(self, key: str) -> str:
        rng = self._ctx.rng
        if key == "order":
            value = f"#{rng.choice('ABCDK')}{rng.randint(10000, 99999)}"
        elif key == "email":
            value = f"{self['name'].lower()}{rng.randint(1, 99)}@example.com"
        elif self._ctx.drifted and key in self._drift and rng.random() < 0.8:
            value = rng.choice(self._drift[key])
        else:
            value = rng.choice(self._pools[key])
        self[key] = value
        return value


def _fill(template: str, slots: _Slots) -> str:
    return template.format_map(slots)


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 4 or not word.isalpha():
        return word
    i = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(3)
    if kind == 0:  # swap two neighbours
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == 1:  # drop a letter
        return word[:i] + word[i + 1:]
    return word[:i] + word[i] + word[i:]  # double a letter


def _add_typos(text: str, rng: random.Random) -> str:
    if rng.random() >= TYPO_ITEM_RATE:
        return text
    words = text.split(" ")
    return " ".join(_typo(w, rng) if rng.random() < TYPO_WORD_RATE else w for w in words)


def _timestamps(n: int, start: datetime | None, rate_per_s: float | None) -> Iterator[datetime]:
    now = datetime.now(UTC)
    base = start if start is not None else now
    if base.tzinfo is None:
        base = base.replace(tzinfo=UTC)
    for i in range(n):
        yield base + timedelta(seconds=i / rate_per_s) if rate_per_s else base


# ------------------------------------------------------------------------------- tickets


def _shared(label: str, siblings: dict[str, str],
            shared: dict[tuple[str, str], list[str]]) -> list[str]:
    """Templates that ``label`` shares with its sibling label (none when there are none)."""
    sibling = siblings[label]
    return shared.get((min(label, sibling), max(label, sibling)), [])


def _shared_sentences(label: str) -> list[str]:
    return _shared(label, V.TICKET_SIBLINGS, V.TICKET_SHARED)


def _second_issue(label: str, ctx: _Ctx, slots: _Slots) -> str:
    """A sentence about the sibling queue's matter: "... and also"; the label stays put."""
    rng = ctx.rng
    also = rng.choice(("", "", "Also, ", "And ", "Another thing: "))
    second = _fill(rng.choice(V.TICKET_SENTENCES[V.TICKET_SIBLINGS[label]]), slots)
    if also and not second.startswith("I "):
        second = second[0].lower() + second[1:]
    return also + second


def _ticket_subject(label: str, ctx: _Ctx, slots: _Slots, second_issue: bool) -> str:
    rng = ctx.rng
    if rng.random() < GENERIC_SUBJECT_RATE:
        return rng.choice(GENERIC_SUBJECTS)
    if second_issue and rng.random() < 0.3:  # titled after the other matter
        return _fill(rng.choice(V.TICKET_SUBJECTS[V.TICKET_SIBLINGS[label]]), slots)
    return _fill(rng.choice(V.TICKET_SUBJECTS[label]), slots)


def _ticket_core(label: str, ctx: _Ctx, slots: _Slots) -> tuple[str, list[str]]:
    """Subject and core sentences of a ticket that says what it is about."""
    rng = ctx.rng
    own = V.TICKET_SENTENCES[label]
    sentences = [_fill(s, slots) for s in rng.sample(own, k=rng.choice((1, 1, 2, 2, 3)))]
    if ctx.drifted and rng.random() < DRIFT_PHRASING_RATE:  # new phrasing replaces the old
        sentences[0] = _fill(rng.choice(V.TICKET_DRIFT_SENTENCES[label]), slots)
    shared = _shared_sentences(label)
    if shared and rng.random() < SHARED_SENTENCE_RATE:
        sentences.insert(rng.randrange(len(sentences) + 1), _fill(rng.choice(shared), slots))
    second_issue = rng.random() < SECOND_ISSUE_RATE
    if second_issue:
        sentences.append(_second_issue(label, ctx, slots))
    return _ticket_subject(label, ctx, slots, second_issue), sentences


def _ticket_ambiguous(label: str, ctx: _Ctx, slots: _Slots) -> tuple[str, list[str]] | None:
    """A ticket written only in the wording ``label`` shares with its sibling queue."""
    shared = _shared_sentences(label)
    if not shared:
        return None
    rng = ctx.rng
    sentences = [_fill(s, slots) for s in rng.sample(shared, k=min(2, len(shared)))]
    subject = rng.choice([*GENERIC_SUBJECTS, f"Order {slots['order']}", ""])
    return subject, sentences


def _ticket_body(sentences: list[str], channel: str, ctx: _Ctx, slots: _Slots) -> str:
    rng = ctx.rng
    openers = V.DRIFT_OPENERS if ctx.drifted and rng.random() < 0.6 else V.OPENERS
    closers = V.DRIFT_CLOSERS if ctx.drifted and rng.random() < 0.6 else V.CLOSERS
    parts: list[str] = []
    if channel == "phone":
        parts.append(rng.choice(V.PHONE_PREFIX))
    elif channel != "chat" or rng.random() < 0.3:
        parts.append(rng.choice(openers))
    parts.extend(sentences)
    if rng.random() < 0.2:
        parts.insert(rng.randrange(1, len(parts) + 1), _fill(rng.choice(V.FILLERS), slots))
    if channel in ("email", "web") or rng.random() < 0.3:
        parts.append(_fill(rng.choice(closers), slots))
    body = " ".join(parts)
    if channel == "chat" and rng.random() < 0.5:
        body = body.lower()
    return _add_typos(body, rng)


def _ticket(task: str, seed: int, i: int, ctx: _Ctx, created_at: datetime) -> Ticket:
    rng = ctx.rng
    weights = V.TICKET_WEIGHTS_DRIFT if ctx.drifted else V.TICKET_WEIGHTS
    label = _pick_weighted(rng, weights)
    channel = _pick_weighted(rng, V.CHANNEL_WEIGHTS)
    slots = _Slots(ctx, V.SLOTS, V.DRIFT_SLOTS)
    ambiguous = rng.random() < AMBIGUOUS_RATE
    made = _ticket_ambiguous(label, ctx, slots) if ambiguous else None
    ambiguous = made is not None
    subject, sentences = made or _ticket_core(label, ctx, slots)
    if channel in ("chat", "phone") and rng.random() < 0.6:
        subject = ""
    return Ticket(
        id=f"{task}-{seed}-{i:07d}",
        created_at=created_at,
        subject=subject,
        body=_ticket_body(sentences, channel, ctx, slots),
        channel=channel,
        customer_tier=_pick_weighted(rng, V.TIER_WEIGHTS),
        metadata=_metadata(label, ctx, ambiguous),
    )


# ---------------------------------------------------------------------------- moderation


def _moderation_text(label: str, ctx: _Ctx, ambiguous: bool) -> str:
    rng = ctx.rng
    slots = _Slots(ctx, V.MOD_SLOTS, V.MOD_DRIFT_SLOTS)
    pool = V.MODERATION_TEXTS[label]
    drift_pool = V.MODERATION_DRIFT_TEXTS.get(label, [])
    if ambiguous:
        pool = _shared(label, V.MODERATION_SIBLINGS, V.MODERATION_SHARED)
    elif ctx.drifted and drift_pool and rng.random() < DRIFT_PHRASING_RATE:
        pool = drift_pool
    text = rng.choice(V.MOD_PREFIXES) + _fill(rng.choice(pool), slots)
    text += rng.choice(V.MOD_SUFFIXES)
    if rng.random() < 0.15:
        text = text.upper() if label in ("spam", "harassment") else text.lower()
    return _add_typos(text, rng)


def _moderation(task: str, seed: int, i: int, ctx: _Ctx, created_at: datetime) -> ModerationItem:
    rng = ctx.rng
    weights = V.MODERATION_WEIGHTS_DRIFT if ctx.drifted else V.MODERATION_WEIGHTS
    label = _pick_weighted(rng, weights)
    ambiguous = rng.random() < AMBIGUOUS_RATE and bool(
        _shared(label, V.MODERATION_SIBLINGS, V.MODERATION_SHARED)
    )
    return ModerationItem(
        id=f"{task}-{seed}-{i:07d}",
        created_at=created_at,
        text=_moderation_text(label, ctx, ambiguous),
        surface=_pick_weighted(rng, V.SURFACE_WEIGHTS),
        metadata=_metadata(label, ctx, ambiguous),
    )


# ---------------------------------------------------------------------------------- API


def _metadata(label: str, ctx: _Ctx, ambiguous: bool) -> dict[str, str]:
    return {
        "oracle_label": label,
        "synthetic": "1",
        "drifted": "1" if ctx.drifted else "0",
        "ambiguous": "1" if ambiguous else "0",
    }


def _check(task: str, n: int, drift_at: float | None, rate_per_s: float | None) -> None:
    if task not in TASKS:
        raise ConfigError(f"no synthetic stream for task {task!r}; known: {', '.join(TASKS)}")
    if n < 0:
        raise ConfigError(f"n must be >= 0, not {n}")
    if drift_at is not None and not 0.0 <= drift_at < 1.0:  # NaN fails too
        raise ConfigError(f"drift_at must be in [0, 1), not {drift_at}")
    if rate_per_s is not None and not rate_per_s > 0:
        raise ConfigError(f"rate_per_s must be > 0, not {rate_per_s}")


def iter_items(
    task: str,
    n: int,
    *,
    seed: int = 0,
    drift_at: float | None = None,
    start: datetime | None = None,
    rate_per_s: float | None = None,
) -> Iterator[SynthItem]:
    """Yield ``n`` synthetic records of ``task`` (see the module docstring)."""
    _check(task, n, drift_at, rate_per_s)
    drift_from = n if drift_at is None else math.floor(drift_at * n)
    make = _ticket if task == "tickets" else _moderation
    log.debug("generating %s %s items, seed %s, drift from %s", n, task, seed, drift_from)
    for i, created_at in enumerate(_timestamps(n, start, rate_per_s)):
        drifted = i >= drift_from
        rng = random.Random(f"{task}:{seed}:{i}:{int(drifted)}")
        yield make(task, seed, i, _Ctx(rng, drifted), created_at)


def generate(
    task: str,
    n: int,
    *,
    seed: int = 0,
    drift_at: float | None = None,
    start: datetime | None = None,
    rate_per_s: float | None = None,
) -> list[SynthItem]:
    """``n`` synthetic records of ``task``, deterministic for ``seed``.

    ``task``: ``tickets`` (``Ticket`` records) or ``moderation`` (``ModerationItem``).
    ``drift_at``: fraction of the stream from which the vocabulary and label frequencies
    shift. ``start``/``rate_per_s``: ``created_at`` of item ``i`` is
    ``start + i / rate_per_s``. Raises ``ConfigError`` on bad arguments.
    """
    return list(iter_items(task, n, seed=seed, drift_at=drift_at, start=start,
                           rate_per_s=rate_per_s))


def labels_of(items: Iterable[InputRecord]) -> list[str]:
    """The true label of each item (its ``metadata["oracle_label"]``)."""
    return [item.metadata["oracle_label"] for item in items]


def label_frequencies(items: Sequence[InputRecord]) -> dict[str, float]:
    """Share of each true label among ``items``, most frequent first."""
    counts = Counter(labels_of(items))
    total = max(len(items), 1)
    return {label: count / total for label, count in counts.most_common()}


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens (for tests and quick baselines)."""
    table = str.maketrans({c: " " for c in string.punctuation if c not in "'#@$"})
    return text.lower().translate(table).split()
