"""Byte-pair encoding over integer symbols (no text, no bytes): what FAST compresses DCT codes with.

Training repeatedly merges the most frequent adjacent pair into a new symbol (ties: the smaller
pair, so training is deterministic) until the vocabulary is full or no pair occurs
``min_frequency`` times. ``train`` keeps every distinct sequence in one linked list with an index
of where each pair occurs, so a merge costs time proportional to that pair's occurrences (the
whole training is about linear in the corpus). ``train_reference`` recounts every pair after every
merge — slow and obviously right; tests check both learn the same merges. Encoding applies merges
by rank, lowest first; decoding expands.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import pairwise

Pair = tuple[int, int]


def _merge(word: list[int], pair: Pair, new: int) -> list[int]:
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and word[i] == pair[0] and word[i + 1] == pair[1]:
            out.append(new)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


def train_reference(
    sequences: Iterable[Sequence[int]], base_size: int, vocab_size: int, min_frequency: int = 2
) -> list[Pair]:
    counts = Counter(tuple(s) for s in sequences)
    words = {tuple(w): c for w, c in counts.items()}
    merges: list[Pair] = []
    while base_size + len(merges) < vocab_size:
        pairs: Counter[Pair] = Counter()
        for word, count in words.items():
            for pair in pairwise(word):
                pairs[pair] += count
        if not pairs:
            break
        pair, count = min(pairs.items(), key=lambda item: (-item[1], item[0]))
        if count < min_frequency:
            break
        new = base_size + len(merges)
        merges.append(pair)
        merged: Counter[tuple[int, ...]] = Counter()
        for word, c in words.items():
            merged[tuple(_merge(list(word), pair, new))] += c
        words = dict(merged)
    return merges


def train(sequences: Iterable[Sequence[int]], base_size: int, vocab_size: int, min_frequency: int = 2) -> list[Pair]:
    counts = Counter(tuple(s) for s in sequences)
    sym: list[int] = []  # all distinct sequences, one after another, as a doubly linked list
    nxt: list[int] = []
    prv: list[int] = []
    weight: list[int] = []
    for word, c in counts.items():
        start = len(sym)
        for i, s in enumerate(word):
            sym.append(int(s))
            prv.append(start + i - 1 if i else -1)
            nxt.append(start + i + 1 if i + 1 < len(word) else -1)
            weight.append(c)
    pair_count: Counter[Pair] = Counter()
    where: dict[Pair, set[int]] = {}
    for p in range(len(sym)):
        q = nxt[p]
        if q >= 0:
            pair = (sym[p], sym[q])
            pair_count[pair] += weight[p]
            where.setdefault(pair, set()).add(p)
    heap = [(-c, p) for p, c in pair_count.items()]
    heapq.heapify(heap)
    merges: list[Pair] = []

    dirty: set[Pair] = set()  # pairs whose count grew during this merge: queued once, after it

    def add(pair: Pair, pos: int, w: int) -> None:
        pair_count[pair] += w
        where.setdefault(pair, set()).add(pos)
        dirty.add(pair)

    def remove(pair: Pair, pos: int, w: int) -> None:  # decrements re-enter the heap when popped stale
        pair_count[pair] -= w
        where.get(pair, set()).discard(pos)

    while base_size + len(merges) < vocab_size and heap:
        neg, pair = heapq.heappop(heap)
        current = pair_count.get(pair, 0)
        if -neg != current:  # stale heap entry: queue the current count instead
            if current > 0:
                heapq.heappush(heap, (-current, pair))
            continue
        if current < min_frequency or current <= 0:
            break
        new = base_size + len(merges)
        merges.append(pair)
        for p in sorted(where.pop(pair, ())):  # left to right, so runs like a a a merge as (aa) a
            q = nxt[p]
            if sym[p] != pair[0] or q < 0 or sym[q] != pair[1]:
                continue  # consumed by an overlapping merge just before
            w = weight[p]
            left, right = prv[p], nxt[q]
            if left >= 0:
                remove((sym[left], sym[p]), left, w)
            if right >= 0:
                remove((sym[q], sym[right]), q, w)
            sym[p], sym[q] = new, -1
            nxt[p] = right
            if right >= 0:
                prv[right] = p
            if left >= 0:
                add((sym[left], new), left, w)
            if right >= 0:
                add((new, sym[right]), p, w)
        pair_count.pop(pair, None)
        for grown in dirty:
            heapq.heappush(heap, (-pair_count[grown], grown))
        dirty.clear()
    return merges


class IntBPE:
    def __init__(self, base_size: int, merges: Sequence[Pair]) -> None:
        self.base_size = int(base_size)
        self.merges = [(int(a), int(b)) for a, b in merges]
        self.ranks = {m: i for i, m in enumerate(self.merges)}
        self._expand: list[tuple[int, ...]] = [(i,) for i in range(self.base_size)]
        for a, b in self.merges:
            self._expand.append(self._expand[a] + self._expand[b])

    @property
    def vocab_size(self) -> int:
        return self.base_size + len(self.merges)

    @classmethod
    def train(
        cls, sequences: Iterable[Sequence[int]], base_size: int, vocab_size: int, min_frequency: int = 2
    ) -> IntBPE:
        return cls(base_size, train(sequences, base_size, vocab_size, min_frequency))

    def encode(self, symbols: Sequence[int]) -> list[int]:
        word = list(symbols)
        while len(word) > 1:
            best = min(pairwise(word), key=lambda p: self.ranks.get(p, len(self.ranks)))
            rank = self.ranks.get(best)
            if rank is None:
                break
            word = _merge(word, best, self.base_size + rank)
        return word

    def decode(self, ids: Sequence[int]) -> list[int]:
        """Expand ids to base symbols; ids outside the vocabulary are dropped."""
        out: list[int] = []
        for i in ids:
            if 0 <= int(i) < len(self._expand):
                out.extend(self._expand[int(i)])
        return out
