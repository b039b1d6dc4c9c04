"""Hashed n-gram features, vectorised over a whole batch with numpy.

A text becomes the ids of its word unigrams, word bigrams and character n-grams (of the
text with non-word characters folded to single spaces, padded by a space at both ends),
hashed into ``buckets`` buckets and shifted by one (id 0 is padding). Hashing is a
polynomial hash over bytes computed for every window at once from prefix sums in uint64
arithmetic (an odd base is invertible modulo 2^64), then mixed with the splitmix64
finaliser: stable across processes and machines, unlike Python's ``hash``. Python touches
each *text* (lower-casing, joining), never each character.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from distillery.errors import ModelError

SCHEME = 2  # 2: over-long items are thinned by hash bits (no sort); 1 re-ranked by a sort

_BASE = np.uint64(0x100000001B3)  # the 64-bit FNV prime: odd, so invertible mod 2^64
_BASE_INV = np.uint64(pow(0x100000001B3, -1, 1 << 64))
_SEP = 0  # byte between items
_SPACE = 32
_SALT_WORD = np.uint64(0x9E3779B97F4A7C15)
_SALT_BIGRAM = np.uint64(0xC2B2AE3D27D4EB4F)
_SALT_CHAR = np.uint64(0x165667B19E3779F9)

# Byte classes: ASCII letters and digits, and every byte of a multi-byte UTF-8 character,
# are word bytes; everything else folds to a space.
_WORD = np.zeros(256, dtype=bool)
for _c in b"abcdefghijklmnopqrstuvwxyz0123456789":
    _WORD[_c] = True
_WORD[128:] = True


_Part = tuple[np.ndarray, np.ndarray, bool]  # item index, hash, is a word unigram

try:  # the C featuriser, compiled by the package's build (pyproject: ext-modules)
    from models import _hashgrams as _native
except ImportError:  # not built (e.g. no compiler where it was installed): numpy it is
    _native = None


def _joined(texts: list[str]) -> bytes:
    """The batch as one buffer: each text lower-cased and padded by a space at both ends,
    texts separated by a 0 byte (none inside a text: a 0 there becomes a space)."""
    data = "\x00".join(" " + t.lower().replace("\x00", " ") + " " for t in texts)
    return data.encode("utf-8", "replace")


@dataclass(frozen=True)
class FeaturizerConfig:
    buckets: int = 1 << 18
    max_ids: int = 160
    char_min: int = 3
    char_max: int = 5
    word_bigrams: bool = True
    scheme: int = SCHEME  # the hashing scheme; a change of ids must bump it


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, vectorised (uint64 wraps as the algorithm wants)."""
    with np.errstate(over="ignore"):
        h = h ^ (h >> np.uint64(30))
        h = h * np.uint64(0xBF58476D1CE4E5B9)
        h = h ^ (h >> np.uint64(27))
        h = h * np.uint64(0x94D049BB133111EB)
        h = h ^ (h >> np.uint64(31))
    return h


class Featurizer:
    def __init__(self, config: FeaturizerConfig | None = None) -> None:
        self.config = config or FeaturizerConfig()

    def to_dict(self) -> dict[str, int | bool]:
        return asdict(self.config)

    @classmethod
    def from_dict(cls, data: dict[str, int | bool]) -> Featurizer:
        """Rebuild from a manifest; a scheme this code does not implement is refused."""
        config = FeaturizerConfig(**data)  # type: ignore[arg-type]
        if config.scheme != SCHEME:
            raise ModelError(f"featurizer scheme {config.scheme} is not supported "
                             f"(this build implements scheme {SCHEME})")
        return cls(config)

    def transform(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Padded ids int64 [n, max_ids] and mask float32 [n, max_ids] (1.0 where id > 0).

        Through the C module ``models._hashgrams`` when it is built (the package's build
        compiles it), else ``transform_numpy``: the same ids, bit for bit.
        """
        if _native is None or not texts:
            return self.transform_numpy(texts)
        c = self.config
        raw = _native.features(_joined(texts), len(texts), c.max_ids, c.buckets, c.char_min,
                               c.char_max, c.word_bigrams)
        out = np.frombuffer(raw, dtype=np.int64).reshape(len(texts), c.max_ids)
        return out, (out > 0).astype(np.float32)

    def transform_numpy(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The reference implementation (numpy, vectorised over the batch).

        An item with more than ``max_ids`` features keeps all its word unigrams first, then
        a pseudo-random but stable subset of the rest — each kept when bits of its hash fall
        under the item's budget share — so that a long text keeps a mix of bigrams and
        character n-grams instead of only the first kinds. No sort: it is the hot path.
        """
        n = len(texts)
        width = self.config.max_ids
        out = np.zeros((n, width), dtype=np.int64)
        parts = self._features(texts) if n else []
        if parts:
            per_part = [np.bincount(p[0], minlength=n) for p in parts]
            counts = np.sum(per_part, axis=0)
            over = counts > width
            if over.any():  # thin the non-unigram features of over-long items first
                words = np.sum([c for c, p in zip(per_part, parts, strict=True) if p[2]],
                               axis=0)
                parts = _thin(parts, over, words, counts, width)
            items, hashes, rank, _ = _ranked(parts, n)
            keep = rank < width
            ids = (hashes[keep] % np.uint64(self.config.buckets)).astype(np.int64) + 1
            out[items[keep], rank[keep]] = ids
        return out, (out > 0).astype(np.float32)

    # --- internals ----------------------------------------------------------------------
    def _features(self, texts: list[str]) -> list[_Part]:
        """The features of every text, by kind; within a kind, grouped by item in order."""
        raw = np.frombuffer(_joined(texts), dtype=np.uint8)
        b = np.where(_WORD[raw], raw, np.uint8(_SPACE))
        b[raw == _SEP] = _SEP
        prev = np.concatenate(([_SEP], b[:-1]))
        b = b[~((b == _SPACE) & (prev == _SPACE))]  # fold runs of spaces
        item = np.cumsum(b == _SEP)  # item index of every byte
        prefix, powers = _prefix(b)
        return self._words(b, item, prefix, powers) + self._chars(b, item, prefix, powers)

    @staticmethod
    def _span_hash(prefix: np.ndarray, powers: np.ndarray, start: np.ndarray,
                   end: np.ndarray) -> np.ndarray:
        """Polynomial hash of b[start:end] for every (start, end) pair at once."""
        with np.errstate(over="ignore"):
            return (prefix[end] - prefix[start]) * powers[end - 1]

    def _words(self, b: np.ndarray, item: np.ndarray, prefix: np.ndarray,
               powers: np.ndarray) -> list[_Part]:
        is_word = (b != _SPACE) & (b != _SEP)
        edges = np.diff(np.concatenate(([False], is_word, [False])).astype(np.int8))
        starts = np.flatnonzero(edges == 1)
        ends = np.flatnonzero(edges == -1)
        if len(starts) == 0:
            return []
        h = self._span_hash(prefix, powers, starts, ends)
        owner = item[starts]
        out: list[_Part] = [(owner, _mix(h ^ _SALT_WORD), True)]
        if self.config.word_bigrams and len(starts) > 1:
            same = owner[1:] == owner[:-1]
            with np.errstate(over="ignore"):
                pair = _mix(h[:-1] ^ _SALT_BIGRAM) * _BASE + h[1:]
            out.append((owner[1:][same], _mix(pair[same] ^ _SALT_BIGRAM), False))
        return out

    def _chars(self, b: np.ndarray, item: np.ndarray, prefix: np.ndarray,
               powers: np.ndarray) -> list[_Part]:
        out: list[_Part] = []
        seps = np.concatenate(([0], np.cumsum(b == _SEP)))  # separators before each index
        for n in range(self.config.char_min, self.config.char_max + 1):
            if len(b) < n:
                continue
            starts = np.arange(len(b) - n + 1)
            ends = starts + n
            clean = seps[ends] == seps[starts]  # no separator inside the window
            starts, ends = starts[clean], ends[clean]
            h = self._span_hash(prefix, powers, starts, ends)
            with np.errstate(over="ignore"):
                salt = _SALT_CHAR + np.uint64(n)
            out.append((item[starts], _mix(h ^ salt), False))
        return out


_POWERS = np.ones(1, dtype=np.uint64)
_INV_POWERS = np.ones(1, dtype=np.uint64)


def _power_tables(count: int) -> tuple[np.ndarray, np.ndarray]:
    """P^i and P^-i mod 2^64 for i < count, computed once and grown on demand."""
    global _POWERS, _INV_POWERS
    if len(_POWERS) < count:
        size = max(count, 2 * len(_POWERS), 1 << 16)
        with np.errstate(over="ignore"):
            powers = np.full(size, _BASE, dtype=np.uint64)
            inverse = np.full(size, _BASE_INV, dtype=np.uint64)
            powers[0] = inverse[0] = 1
            _POWERS = np.cumprod(powers, dtype=np.uint64)
            _INV_POWERS = np.cumprod(inverse, dtype=np.uint64)
    return _POWERS[:count], _INV_POWERS[:count]


def _prefix(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """C[i] = sum_{j<i} b[j] P^-j (so that a window's hash is P^(end-1) (C[end] - C[start]))."""
    powers, inverse = _power_tables(len(b) + 1)
    prefix = np.zeros(len(b) + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        np.cumsum(b.astype(np.uint64) * inverse[:-1], dtype=np.uint64, out=prefix[1:])
    return prefix, powers


def _ranked(parts: list[_Part], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                  np.ndarray]:
    """Concatenate the parts with every feature's rank within its item (kind order)."""
    base = np.zeros(n, dtype=np.int64)
    ranks = []
    for items, _hashes, _unigram in parts:
        counts = np.bincount(items, minlength=n)
        starts = np.cumsum(counts) - counts
        ranks.append(np.arange(len(items)) - starts[items] + base[items])
        base += counts
    items = np.concatenate([p[0] for p in parts])
    hashes = np.concatenate([p[1] for p in parts])
    unigram = np.concatenate([np.full(len(p[0]), p[2]) for p in parts])
    return items, hashes, np.concatenate(ranks), unigram


def _thin(parts: list[_Part], over: np.ndarray, words: np.ndarray, counts: np.ndarray,
          width: int) -> list[_Part]:
    """Keep each non-unigram feature of an over-long item with probability budget / count,
    decided by 16 bits of its hash: stable, and the same n-gram is always kept or dropped."""
    budget = np.maximum(width - words, 0)
    share = np.where(over, budget / np.maximum(counts - words, 1), 1.0)
    # 1.5x spare: the budget fills in practice; the rank cap trims the overflow
    cut = np.minimum(share * 65536.0 * 1.5, 65536.0).astype(np.uint64)
    out: list[_Part] = []
    for items, hashes, is_unigram in parts:
        if is_unigram:
            out.append((items, hashes, is_unigram))
            continue
        keep = ((hashes >> np.uint64(40)) & np.uint64(0xFFFF)) < cut[items]
        out.append((items[keep], hashes[keep], is_unigram))
    return out
