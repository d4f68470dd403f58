"""PURE: address spans, the integer intervals probe plans with: ranges (127.0.1.1-254),
exclusions, and which target scans an address that several targets name. No sockets.

Nothing here lists the addresses of a block: a /16 minus a /24 is two (first, last) pairs.
"""

from __future__ import annotations

import bisect
import heapq
import ipaddress
import itertools
from collections.abc import Iterable, Sequence

# A span: (key, first, last) with first <= last as address integers. key is (version, scope):
# IPv4 and IPv6 never mix, nor IPv6 link-local addresses of different zones.
Key = tuple[int, int]
Span = tuple[Key, int, int]


class AddressRange:
    """first..last as a sequence of addresses: what a CIDR network offers the planner
    (version, num_addresses, indexing, subnet_of), for ranges that are no CIDR block."""

    __slots__ = ("_cls", "first", "last", "version")

    def __init__(self, first: ipaddress.IPv4Address | ipaddress.IPv6Address,
                 last: ipaddress.IPv4Address | ipaddress.IPv6Address):
        if first.version != last.version or int(last) < int(first):
            raise ValueError("a range runs from a lower to a higher address of one family")
        self.first, self.last, self.version = int(first), int(last), first.version
        self._cls = type(first)

    @property
    def num_addresses(self) -> int:
        return self.last - self.first + 1

    @property
    def network_address(self):
        return self._cls(self.first)

    @property
    def broadcast_address(self):
        return self._cls(self.last)

    def __len__(self) -> int:
        return self.num_addresses

    def __getitem__(self, index: int):
        if not 0 <= index < self.num_addresses:
            raise IndexError(index)
        return self._cls(self.first + index)

    def subnet_of(self, other) -> bool:
        return (other.version == self.version and int(other.network_address) <= self.first
                and self.last <= int(other.broadcast_address))

    def __str__(self) -> str:
        return f"{self._cls(self.first)}-{self._cls(self.last)}"

    def __repr__(self) -> str:
        return f"AddressRange({str(self)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, AddressRange) and (self.version, self.first, self.last) == (
            other.version, other.first, other.last)

    def __hash__(self) -> int:
        return hash((self.version, self.first, self.last))


def span_of(block, scope: int = 0) -> Span:
    """An ipaddress network, an AddressRange or a single address -> its span."""
    if isinstance(block, AddressRange):
        return (block.version, scope), block.first, block.last
    if isinstance(block, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        return (block.version, scope), int(block.network_address), int(block.broadcast_address)
    return (block.version, scope), int(block), int(block)


def merge(spans: Iterable[Span]) -> dict[Key, tuple[list[int], list[int]]]:
    """Spans -> per key, sorted disjoint (firsts, lasts) lists (touching spans joined)."""
    by_key: dict[Key, list[tuple[int, int]]] = {}
    for key, first, last in spans:
        by_key.setdefault(key, []).append((first, last))
    merged = {}
    for key, items in by_key.items():
        items.sort()
        firsts: list[int] = []
        lasts: list[int] = []
        for first, last in items:
            if lasts and first <= lasts[-1] + 1:
                lasts[-1] = max(lasts[-1], last)
            else:
                firsts.append(first)
                lasts.append(last)
        merged[key] = (firsts, lasts)
    return merged


def subtract(first: int, last: int, holes: tuple[list[int], list[int]] | None) -> list[tuple[int, int]]:
    """first..last without the merged spans `holes` (from merge), as ascending (first, last) pairs."""
    if not holes:
        return [(first, last)]
    firsts, lasts = holes
    pieces = []
    k = max(0, bisect.bisect_right(lasts, first - 1))  # the first hole that ends at or after `first`
    at = first
    while at <= last:
        if k >= len(firsts) or firsts[k] > last:
            pieces.append((at, last))
            break
        if firsts[k] > at:
            pieces.append((at, firsts[k] - 1))
        at = max(at, lasts[k] + 1)
        k += 1
    return pieces


class Assignment:
    """Which target scans each address: the first target that names it (targets in the order
    given), minus the excluded spans. `pieces[i]` are target i's own (first, last) pairs,
    ascending; `shared[i]` counts its addresses an earlier target already scans, `excluded[i]`
    those an exclusion removed, and `first_owner[i]` names the earliest such earlier target."""

    def __init__(self, pieces: list[list[tuple[int, int]]], shared: list[int], excluded: list[int],
                 first_owner: list[int | None]):
        self.pieces, self.shared, self.excluded, self.first_owner = pieces, shared, excluded, first_owner


def assign(spans: Sequence[Span], exclude: Iterable[Span] = ()) -> Assignment:
    """Give every address to the first span (by position) that holds it, then drop the excluded
    ones. A sweep over the span ends with a heap of the open spans: O(n log n), nothing listed.

    A name that resolves to an address inside an earlier CIDR block, or a target given twice,
    so gets nothing of its own: the address is scanned once.
    """
    n = len(spans)
    pieces: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    owner_of: list[int | None] = [None] * n
    by_key: dict[Key, list[int]] = {}
    for i, (key, _, _) in enumerate(spans):
        by_key.setdefault(key, []).append(i)
    for members in by_key.values():
        _sweep(spans, members, pieces, owner_of)
    holes = merge(exclude)
    shared, excluded = [0] * n, [0] * n
    for i, (key, first, last) in enumerate(spans):
        owned = sum(b - a + 1 for a, b in pieces[i])
        shared[i] = (last - first + 1) - owned
        kept = []
        for a, b in pieces[i]:
            kept.extend(subtract(a, b, holes.get(key)))
        excluded[i] = owned - sum(b - a + 1 for a, b in kept)
        pieces[i] = kept
    return Assignment(pieces, shared, excluded, owner_of)


def _sweep(spans: Sequence[Span], members: list[int], pieces: list, owner_of: list) -> None:
    """For the spans `members` (one key): each elementary stretch goes to the lowest position
    among the spans open over it."""
    events = sorted({spans[i][1] for i in members} | {spans[i][2] + 1 for i in members})
    starts = sorted(members, key=lambda i: spans[i][1])
    open_heap: list[int] = []  # positions of the spans open at the current point
    k = 0
    for left, right in itertools.pairwise(events):
        while k < len(starts) and spans[starts[k]][1] <= left:
            heapq.heappush(open_heap, starts[k])
            k += 1
        while open_heap and spans[open_heap[0]][2] < left:
            heapq.heappop(open_heap)
        if not open_heap:
            continue
        winner = open_heap[0]
        own = pieces[winner]
        if own and own[-1][1] == left - 1:
            own[-1] = (own[-1][0], right - 1)
        else:
            own.append((left, right - 1))
        if len(open_heap) > 1:  # the others open here lose this stretch: note who took it
            for i in open_heap:
                if i != winner and owner_of[i] is None and spans[i][2] >= left:
                    owner_of[i] = winner
