"""Personal data out of a text before it leaves the stream processor.

A task that lists ``redact = ["email", "phone", "card", "iban", "ip", "url"]`` (any of them)
has every input's text redacted where it is decoded (``streams.decode``), so the student
serves on the redacted text, the teacher is asked about it, and the teacher topic, the
verdicts and the training store only ever hold it; ``distillery train --data`` redacts its
rows the same way (train/serve parity). Each find becomes a placeholder such as ``[EMAIL]``,
which the student reads as one more token. Redacting a redacted text changes nothing.

What is found, and how it is checked:

- ``email``: ``local@domain.tld``;
- ``phone``: ``phonenumbers`` (Google's libphonenumber metadata) on runs of digits:
  numbers written nationally for the task's ``redact_region`` that are valid there and
  grouped as it groups them, and numbers written ``+<country> ...`` of a possible length;
- ``card``: 13 to 19 digits (spaces or dashes between), a card network's first digit (2-6)
  and the Luhn checksum (``python-stdnum``);
- ``iban``: country code, check digits and the account, compact or in groups of four, that
  pass ``python-stdnum``'s IBAN check (length per country and mod 97);
- ``ip``: IPv4 and IPv6 addresses that the standard library's ``ipaddress`` accepts;
- ``url``: ``http://``, ``https://``, ``ftp://`` and ``www.`` links.

Where two finds overlap, the longer one wins (an e-mail address inside a URL is the URL).
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

RedactKind = Literal["email", "phone", "card", "iban", "ip", "url"]
REDACT_KINDS: tuple[RedactKind, ...] = ("email", "phone", "card", "iban", "ip", "url")
PLACEHOLDERS: dict[str, str] = {kind: f"[{kind.upper()}]" for kind in REDACT_KINDS}

_EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+"
                    r"[A-Za-z]{2,}\b")
_URL = re.compile(r"(?i)\b(?:https?://|ftp://|www\.)[^\s<>\"'`]+")
_URL_TRAILING = ".,;:!?)]}'\""
_CARD = re.compile(r"(?<![\d-])[2-6]\d(?:[ -]?\d){11,17}(?![\d])")
_IBAN_COMPACT = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}[A-Za-z0-9]{11,30}(?![A-Za-z0-9])")
_IBAN_GROUPED = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?: [A-Za-z0-9]{4}){2,7}"
                           r"(?: [A-Za-z0-9]{1,4})?(?![A-Za-z0-9])")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?!\d|\.\d)")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_MAYBE = re.compile(r"[\d@]|::|://|www\.", re.IGNORECASE)  # every kind needs one of these
_DIGITS7 = re.compile(r"(?:\d\D{0,3}){7}")  # cheap pre-check: a phone has 7+ digits


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    kind: RedactKind


@dataclass(frozen=True)
class Redacted:
    text: str
    counts: Mapping[str, int]  # kind -> how many were replaced (absent: none)


def _emails(text: str, region: str) -> Iterable[Span]:
    if "@" in text:
        for m in _EMAIL.finditer(text):
            yield Span(m.start(), m.end(), "email")


def _urls(text: str, region: str) -> Iterable[Span]:
    for m in _URL.finditer(text):
        end = m.end()
        while end > m.start() and text[end - 1] in _URL_TRAILING:
            end -= 1
        if end - m.start() > 4:
            yield Span(m.start(), end, "url")


def _cards(text: str, region: str) -> Iterable[Span]:
    from stdnum import luhn

    for m in _CARD.finditer(text):
        candidate = m.group()
        while True:  # a following number (a CVV, a date) may have joined the last group
            digits = re.sub(r"\D", "", candidate)
            if len(digits) < 13:
                break
            if len(digits) <= 19 and luhn.is_valid(digits):
                yield Span(m.start(), m.start() + len(candidate), "card")
                break
            cut = max(candidate.rfind(" "), candidate.rfind("-"))
            if cut <= 0:
                break
            candidate = candidate[:cut]


def _ibans(text: str, region: str) -> Iterable[Span]:
    from stdnum import iban

    for m in _IBAN_COMPACT.finditer(text):
        if iban.is_valid(m.group()):
            yield Span(m.start(), m.end(), "iban")
    for m in _IBAN_GROUPED.finditer(text):
        candidate = m.group()
        while candidate.count(" ") >= 2:  # a following word may have joined the last group
            if iban.is_valid(candidate):
                yield Span(m.start(), m.start() + len(candidate), "iban")
                break
            candidate = candidate.rsplit(" ", 1)[0]


def _ips(text: str, region: str) -> Iterable[Span]:
    if "." in text:
        for m in _IPV4.finditer(text):
            if _is_ip(m.group()):
                yield Span(m.start(), m.end(), "ip")
    if "::" in text or text.count(":") >= 7:
        for m in _IPV6.finditer(text):
            if m.group().count(":") >= 2 and _is_ip(m.group()):
                yield Span(m.start(), m.end(), "ip")


def _is_ip(candidate: str) -> bool:
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


_PHONE_CANDIDATE = re.compile(r"(?<![\w+])(?:\+|\(|\d)[\d \t().\-/]{5,24}\d(?!\w)")


def _phones(text: str, region: str, taken: Sequence[Span] = ()) -> Iterable[Span]:
    """Phone numbers among the runs of digits and separators of the text.

    Rather than ``phonenumbers.PhoneNumberMatcher`` over the whole text (slow), this checks
    only the candidate runs, with ``phonenumbers.parse`` and its validity metadata, and the
    matcher's *strict grouping* done here: a number written nationally must be valid for the
    region, and its digit groups must be groups of the number as the region writes it (an
    SKU such as 25294669-29 is a valid US number, but not grouped like one).
    """
    if not _DIGITS7.search(text):
        return
    for t in taken:  # a card, an IP address, ... found already is no phone's part
        text = text[:t.start] + "X" * (t.end - t.start) + text[t.end:]
    for m in _PHONE_CANDIDATE.finditer(text):
        candidate = m.group()
        for start, end in _trims(candidate):
            if _is_phone(candidate[start:end], region):
                yield Span(m.start() + start, m.start() + end, "phone")
                break


def _trims(candidate: str) -> Iterable[tuple[int, int]]:
    """The candidate, then without a leading group, then without a trailing group."""
    yield 0, len(candidate)
    cut = re.search(r"[\s/]+", candidate)
    if cut:
        yield cut.end(), len(candidate)
    last = list(re.finditer(r"[\s/]+", candidate))
    if last:
        yield 0, last[-1].start()


def _is_phone(candidate: str, region: str) -> bool:
    import phonenumbers

    candidate = candidate.strip(" \t-./")
    try:
        number = phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException:
        return False
    if candidate.startswith("+"):  # "+<country> ...": a possible length for that country
        return phonenumbers.is_possible_number(number)
    if not phonenumbers.is_valid_number_for_region(number, region):
        return False
    digits = re.findall(r"\d+", candidate)
    if len(digits) == 1:
        return True  # written without separators
    national = phonenumbers.national_significant_number(number)
    if not "".join(digits).endswith(national):
        return False
    written = re.findall(r"\d+", phonenumbers.format_number(
        number, phonenumbers.PhoneNumberFormat.NATIONAL))
    allowed = _cuts_from_end(written) | {len(national)}
    return _cuts_from_end(digits) <= allowed


def _cuts_from_end(groups: list[str]) -> set[int]:
    """Where the group boundaries are, counted in digits from the end."""
    cuts, at = set(), 0
    for group in reversed(groups[1:]):
        at += len(group)
        cuts.add(at)
    return cuts


_FINDERS: dict[str, Callable[[str, str], Iterable[Span]]] = {
    "email": _emails, "url": _urls, "iban": _ibans, "card": _cards, "ip": _ips,
    "phone": _phones,
}


def find(text: str, kinds: Iterable[RedactKind], region: str = "US") -> list[Span]:
    """The non-overlapping finds of ``kinds`` in ``text``, in text order (longest wins)."""
    kinds = list(kinds)
    spans = [s for kind in kinds if kind != "phone" for s in _FINDERS[kind](text, region)]
    if "phone" in kinds:  # the slowest check: not where a card, an IP, ... was found
        spans += list(_phones(text, region, spans))
    # longest first; of two as long, a phone last (an IPv4 address can read as one)
    spans.sort(key=lambda s: (s.start - s.end, s.kind == "phone", s.start))
    kept: list[Span] = []
    for span in spans:
        if all(span.end <= k.start or span.start >= k.end for k in kept):
            kept.append(span)
    return sorted(kept, key=lambda s: s.start)


class Redactor:
    """``redactor(text)`` -> ``Redacted``: the text with each find replaced by its placeholder."""

    def __init__(self, kinds: Iterable[RedactKind], region: str = "US") -> None:
        self.kinds: tuple[RedactKind, ...] = tuple(k for k in REDACT_KINDS if k in set(kinds))
        self.region = region

    def __call__(self, text: str) -> Redacted:
        if not _MAYBE.search(text):  # most metadata values, many short texts
            return Redacted(text, {})
        spans = find(text, self.kinds, self.region)
        if not spans:
            return Redacted(text, {})
        parts: list[str] = []
        at = 0
        for span in spans:
            parts += [text[at:span.start], PLACEHOLDERS[span.kind]]
            at = span.end
        parts.append(text[at:])
        return Redacted("".join(parts), Counter(s.kind for s in spans))

    def text(self, text: str) -> str:
        return self(text).text


@lru_cache(maxsize=32)
def redactor(kinds: tuple[RedactKind, ...], region: str = "US") -> Redactor:
    """One shared ``Redactor`` per (kinds, region)."""
    return Redactor(kinds, region)


def check_region(region: str) -> str:
    """``region`` if ``phonenumbers`` knows it (a two-letter region code such as ``US``)."""
    import phonenumbers

    if region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown phone region {region!r}: a two-letter code such as "
                         "'US', 'GB' or 'DE'")
    return region.upper()
