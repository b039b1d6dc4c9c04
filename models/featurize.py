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


@dataclass(frozen=True)
class FeaturizerConfig:
    buckets: int = 1 << 18
    max_ids: int = 160
    char_min: int = 3
    char_max: int = 5
    word_bigrams: bool = True


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
        return cls(FeaturizerConfig(**data))  # type: ignore[arg-type]

    def transform(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Padded ids int64 [n, L] and mask float32 [n, L], L = longest item (<= max_ids)."""
        n = len(texts)
        items, ids = self._features(texts)
        cfg = self.config
        order = np.argsort(items, kind="stable")
        items, ids = items[order], ids[order]
        counts = np.bincount(items, minlength=n)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        rank = np.arange(len(items)) - starts[items]
        keep = rank < cfg.max_ids
        width = int(min(cfg.max_ids, counts.max(initial=1)))
        width = max(width, 1)
        out = np.zeros((n, width), dtype=np.int64)
        out[items[keep], rank[keep]] = ids[keep]
        return out, (out > 0).astype(np.float32)

    # --- internals ----------------------------------------------------------------------
    def _features(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        data = ("\x00".join(" " + t.lower() + " " for t in texts)).encode("utf-8", "replace")
        raw = np.frombuffer(data, dtype=np.uint8)
        b = np.where(_WORD[raw], raw, np.uint8(_SPACE))
        b[raw == _SEP] = _SEP
        prev = np.concatenate(([_SEP], b[:-1]))
        b = b[~((b == _SPACE) & (prev == _SPACE))]  # fold runs of spaces
        item = np.cumsum(b == _SEP)  # item index of every byte
        prefix, powers = self._prefix(b)
        parts_items: list[np.ndarray] = []
        parts_ids: list[np.ndarray] = []
        for items, hashes in (*self._words(b, item, prefix, powers), *self._chars(b, item, prefix, powers)):
            parts_items.append(items)
            parts_ids.append(hashes)
        items = np.concatenate(parts_items).astype(np.int64)
        hashes = np.concatenate(parts_ids)
        ids = (hashes % np.uint64(self.config.buckets)).astype(np.int64) + 1
        return items, ids

    @staticmethod
    def _prefix(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        count = len(b) + 1
        inv_powers = np.full(count, _BASE_INV, dtype=np.uint64)
        inv_powers[0] = 1
        powers = np.full(count, _BASE, dtype=np.uint64)
        powers[0] = 1
        with np.errstate(over="ignore"):
            inv_powers = np.cumprod(inv_powers, dtype=np.uint64)
            powers = np.cumprod(powers, dtype=np.uint64)
            prefix = np.zeros(count, dtype=np.uint64)
            prefix[1:] = np.cumsum(b.astype(np.uint64) * inv_powers[:-1], dtype=np.uint64)
        return prefix, powers

    @staticmethod
    def _span_hash(prefix: np.ndarray, powers: np.ndarray, start: np.ndarray,
                   end: np.ndarray) -> np.ndarray:
        """Polynomial hash of b[start:end] for every (start, end) pair at once."""
        with np.errstate(over="ignore"):
            return (prefix[end] - prefix[start]) * powers[end - 1]

    def _words(self, b: np.ndarray, item: np.ndarray, prefix: np.ndarray,
               powers: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        is_word = (b != _SPACE) & (b != _SEP)
        edges = np.diff(np.concatenate(([False], is_word, [False])).astype(np.int8))
        starts = np.flatnonzero(edges == 1)
        ends = np.flatnonzero(edges == -1)
        if len(starts) == 0:
            return []
        h = self._span_hash(prefix, powers, starts, ends)
        owner = item[starts]
        out = [(owner, _mix(h ^ _SALT_WORD))]
        if self.config.word_bigrams and len(starts) > 1:
            same = owner[1:] == owner[:-1]
            with np.errstate(over="ignore"):
                pair = _mix(h[:-1] ^ _SALT_BIGRAM) * _BASE + h[1:]
            out.append((owner[1:][same], _mix(pair[same] ^ _SALT_BIGRAM)))
        return out

    def _chars(self, b: np.ndarray, item: np.ndarray, prefix: np.ndarray,
               powers: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
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
            out.append((item[starts], _mix(h ^ salt)))
        return out
