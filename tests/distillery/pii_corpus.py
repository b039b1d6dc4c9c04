"""A seeded corpus of support tickets with personal data in them, and one without.

Each PII sample is a ticket sentence with one value of one kind, written the ways people
write it (spacing, dashes, parentheses, case, punctuation after it). The values are made
here from their own rules (network prefixes and the Luhn digit for cards, mod-97 check
digits for IBANs, area codes and exchanges for US phones), not by the library the
redactor uses to find them, so the corpus can catch what the redactor misses.

The clean tickets are full of numbers that are *not* personal data: order and ticket
numbers, prices, dates, times, versions, postcodes, percentages, SKUs.
"""

from __future__ import annotations

import ipaddress
import random
import string
from collections.abc import Callable
from dataclasses import dataclass

from workers.sim.synth import iter_items


@dataclass(frozen=True)
class Sample:
    kind: str
    value: str  # the personal data as written in the text
    text: str


_NAMES = ["john", "maria", "li", "ahmed", "olga", "kwame", "sofia", "raj", "emma", "tomasz"]
_LAST = ["smith", "garcia", "wang", "khan", "ivanova", "mensah", "rossi", "patel", "muller"]
_DOMAINS = ["gmail.com", "outlook.com", "example.org", "mail.acme-corp.co.uk", "uni-berlin.de",
            "proton.me", "sub.example.io", "yahoo.fr", "company.com.au", "hotmail.es"]
_LEADS = ["Please contact me at {v}.", "My email is {v} and I cannot log in",
          "reach me on {v}, thanks", "Send the invoice to <{v}>", "({v})",
          "You can call me at {v} after 5pm.", "Card used: {v}. Please refund it",
          "I paid with {v}", "Wire it to {v} please", "Login attempt from {v} was not me",
          "See {v} for the screenshot.", "the number {v} is on my account", "{v}",
          "Hi, {v} is mine; my order #A1234 never came."]


def _email(rng: random.Random) -> str:
    first, last = rng.choice(_NAMES), rng.choice(_LAST)
    local = rng.choice([f"{first}.{last}", f"{first}_{last}{rng.randint(1, 99)}",
                        f"{first[0]}{last}+support", f"{first.upper()}.{last.capitalize()}",
                        f"{first}{rng.randint(1970, 2005)}"])
    return f"{local}@{rng.choice(_DOMAINS)}"


_AREA = [201, 212, 213, 312, 305, 404, 415, 503, 512, 617, 646, 702, 713, 718, 801, 917]


def _phone(rng: random.Random) -> str:
    if rng.random() < 0.3:  # international, other countries, as people write them
        return rng.choice([
            f"+44 20 {rng.randint(7000, 7999)} {rng.randint(1000, 9999)}",
            f"+44 7{rng.randint(400, 999)} {rng.randint(100000, 999999)}",
            f"+49 30 {rng.randint(1000000, 9999999)}",
            f"+49 151 {rng.randint(10000000, 99999999)}",
            f"+33 6 {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)} "
            f"{rng.randint(10, 99)}",
            f"+91 98{rng.randint(100, 999)} {rng.randint(10000, 99999)}",
            f"+61 4{rng.randint(10, 99)} {rng.randint(100, 999)} {rng.randint(100, 999)}",
        ])
    a, e, s = rng.choice(_AREA), rng.randint(201, 989), rng.randint(0, 9999)
    if e % 100 == 11:  # N11 exchanges are service codes
        e += 1
    return rng.choice(["({a}) {e}-{s:04d}", "{a}-{e}-{s:04d}", "{a}.{e}.{s:04d}",
                       "{a} {e} {s:04d}", "+1 {a} {e} {s:04d}", "+1-{a}-{e}-{s:04d}",
                       "1-{a}-{e}-{s:04d}", "+1 ({a}) {e}-{s:04d}"]).format(a=a, e=e, s=s)


def _luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


_NETWORKS = [("4", 16), ("4", 13), ("51", 16), ("55", 16), ("2221", 16), ("2720", 16),
             ("34", 15), ("37", 15), ("6011", 16), ("65", 16), ("3528", 16), ("36", 14),
             ("62", 19)]


def _card(rng: random.Random) -> str:
    prefix, length = rng.choice(_NETWORKS)
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    number = body + _luhn_digit(body)
    style = rng.choice(["compact", "space", "dash"])
    if style == "compact":
        return number
    sep = " " if style == "space" else "-"
    if length == 15:
        return sep.join([number[:4], number[4:10], number[10:]])
    return sep.join(number[i:i + 4] for i in range(0, length, 4))


_BBAN = {"DE": "8n10n", "GB": "4a6n8n", "NL": "4a10n", "CH": "5n12n", "AT": "5n11n",
         "IE": "4a6n8n", "PL": "8n16n", "DK": "4n9n1n", "FI": "3n11n", "LU": "3n13c"}


def _bban(rng: random.Random, shape: str) -> str:
    out, number = [], ""
    for ch in shape:
        if ch.isdigit():
            number += ch
            continue
        alphabet = {"n": string.digits, "a": string.ascii_uppercase,
                    "c": string.digits + string.ascii_uppercase}[ch]
        out.append("".join(rng.choice(alphabet) for _ in range(int(number))))
        number = ""
    return "".join(out)


def _iban(rng: random.Random) -> str:
    country = rng.choice(sorted(_BBAN))
    bban = _bban(rng, _BBAN[country])
    digits = "".join(str(int(c, 36)) for c in bban + country + "00")
    check = 98 - int(digits) % 97
    compact = f"{country}{check:02d}{bban}"
    if rng.random() < 0.5:
        return compact
    return " ".join(compact[i:i + 4] for i in range(0, len(compact), 4))


def _ip(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return str(ipaddress.IPv4Address(rng.randint(0x01000000, 0xDFFFFFFF)))
    address = ipaddress.IPv6Address(rng.getrandbits(128) & ~((1 << 64) - 1)
                                    if rng.random() < 0.5 else rng.getrandbits(128))
    return address.compressed if rng.random() < 0.7 else address.exploded


def _url(rng: random.Random) -> str:
    host = rng.choice(["drive.google.com", "imgur.com", "example.com", "shop.acme.io",
                       "dropbox.com", "my-site.org"])
    path = "/".join(rng.choice(["s", "file", "d", "x9Fq2", "invoice", "123"])
                    for _ in range(rng.randint(0, 3)))
    query = rng.choice(["", "?id=42", "?u=john&t=a1b2", "#top"])
    scheme = rng.choice(["https://", "http://", "www.", "https://www."])
    if scheme == "www.":
        host = host.removeprefix("www.")
    return f"{scheme}{host}/{path}{query}".rstrip("/") if path or query else f"{scheme}{host}"


MAKERS: dict[str, Callable[[random.Random], str]] = {
    "email": _email, "phone": _phone, "card": _card, "iban": _iban, "ip": _ip, "url": _url,
}


def pii_samples(per_kind: int = 100, seed: int = 7) -> list[Sample]:
    """``per_kind`` tickets for each kind, one value in each."""
    rng = random.Random(seed)
    samples = []
    for kind, make in MAKERS.items():
        for _ in range(per_kind):
            value = make(rng)
            samples.append(Sample(kind, value, rng.choice(_LEADS).format(v=value)))
    return samples


_CLEAN = [
    "Order #{o} arrived damaged, box {n} of 3.",
    "I was charged ${p} twice on {d}. Invoice INV-{o}.",
    "The app crashes on version {v} since the update at {t}.",
    "Ticket {o}: my refund of EUR {p} is still pending after {n} days.",
    "Tracking number 1Z{o}{n}AA shows no movement since {d}.",
    "Please ship to postcode {z}; the order {o} is urgent.",
    "Build {b} fails at step {n}, error 0x{h}.",
    "Discount of {n}% was not applied to order {o} placed at {t} on {d}.",
    "SKU {o}-{n} is out of stock, I need {n} units by {d}.",
    "My subscription renews on {d} for ${p}; cancel before {t} please.",
    "Firmware {v} on device serial SN{o} reboots every {n} minutes.",
    "Room 4{n}, floor {n}: the reader shows code {h}.",
]


def clean_tickets(n_templated: int = 150, n_synth: int = 150, seed: int = 11) -> list[str]:
    """Tickets with no personal data: templated ones dense with numbers, and synthetic ones
    (``workers.sim.synth``) whose text has no ``@`` (their only personal data is e-mail)."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n_templated):
        texts.append(rng.choice(_CLEAN).format(
            o=rng.randint(10_000, 99_999_999), n=rng.randint(1, 60),
            p=f"{rng.randint(1, 999)}.{rng.randint(0, 99):02d}",
            d=rng.choice([f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                          f"{rng.randint(1, 12)}/{rng.randint(1, 28)}/2026",
                          f"{rng.randint(1, 28)} March 2026"]),
            t=f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}",
            v=f"{rng.randint(1, 20)}.{rng.randint(0, 20)}.{rng.randint(0, 99)}",
            z=rng.choice([f"{rng.randint(10000, 99999)}", "SW1A 1AA", "75001"]),
            b=rng.randint(2026_01_01, 2026_12_31), h=f"{rng.getrandbits(32):08X}"))
    for item in iter_items("tickets", n_synth * 2, seed=seed):
        text = f"{item.subject}\n{item.body}"
        if "@" not in text and len(texts) < n_templated + n_synth:
            texts.append(text)
    return texts
