"""Pages of a long list, for the lookups' lists and the report flow's task picker."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: tuple[T, ...]
    number: int  # 0-based
    count: int  # how many pages in all (at least 1)

    @property
    def has_previous(self) -> bool:
        return self.number > 0

    @property
    def has_next(self) -> bool:
        return self.number + 1 < self.count


def page_count(items: Sequence[object], size: int) -> int:
    """How many pages of `size` the items fill (at least 1: an empty list has its first page)."""
    return max(1, -(-len(items) // size))


def paginate(items: Sequence[T], page: int, size: int) -> Page[T] | None:
    """Page `page` (0-based) of `items`; None when that page does not exist (stale or forged)."""
    if not 0 <= page < page_count(items, size):
        return None
    return nearest_page(items, page, size)


def nearest_page(items: Sequence[T], page: int, size: int) -> Page[T]:
    """Page `page`, or the first or last page when it is before or past them."""
    count = page_count(items, size)
    number = min(max(page, 0), count - 1)
    return Page(tuple(items[number * size : (number + 1) * size]), number, count)
