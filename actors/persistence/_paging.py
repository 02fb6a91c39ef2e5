"""Reading query results page by page (keyset pagination), shared by the SQL backends."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

_Out = TypeVar("_Out")
_Conn = TypeVar("_Conn")

ReadPage = Callable[[int], Awaitable[list[Any]]]
"""``read_page(after)``: up to ``limit`` rows whose key column is greater than ``after``,
in key order (a backend runs the query in a thread and maps errors to JournalFailure)."""


def page_reader(
    read: Callable[[str, Callable[[_Conn], list[Any]]], Awaitable[list[Any]]],
    what: str,
    query: Callable[[_Conn, int], list[Any]],
) -> ReadPage:
    """A :data:`ReadPage` that runs ``query(conn, after)`` through the backend's
    ``read(what, query)`` (a read connection in a thread), naming the page in errors."""

    async def read_page(after: int) -> list[Any]:
        return await read(f"{what} after {after}", lambda conn: query(conn, after))

    return read_page


class Pages(Generic[_Out]):
    """An async iterator over rows read one page at a time, each row given as
    ``convert(row)``. ``key`` is the index of the key column in a row. Not an async
    generator, so an iteration abandoned early holds nothing and needs no finalisation;
    only one page is held at a time."""

    def __init__(
        self,
        read_page: ReadPage,
        after: int,
        key: int,
        limit: int,
        convert: Callable[[Any], _Out],
    ) -> None:
        self._read_page = read_page
        self._after = after
        self._key = key
        self._limit = limit
        self._convert = convert
        self._rows: list[Any] = []
        self._index = 0
        self._exhausted = False

    def __aiter__(self) -> Pages[_Out]:
        return self

    async def _next_page(self) -> list[Any]:
        if self._exhausted:
            raise StopAsyncIteration
        rows = await self._read_page(self._after)
        if len(rows) < self._limit:
            self._exhausted = True
        if not rows:
            raise StopAsyncIteration
        self._after = rows[-1][self._key]
        return rows

    async def __anext__(self) -> _Out:
        if self._index >= len(self._rows):
            self._rows = await self._next_page()
            self._index = 0
        row = self._rows[self._index]
        self._index += 1
        return self._convert(row)


class PageChunks(Pages[list[Any]]):
    """Like :class:`Pages`, but yields each page whole, as the list of its rows, or as
    ``convert_page(rows)`` if given (which may raise: the iteration has then moved past
    that page)."""

    def __init__(
        self,
        read_page: ReadPage,
        after: int,
        key: int,
        limit: int,
        convert_page: Callable[[list[Any]], list[Any]] | None = None,
    ) -> None:
        super().__init__(read_page, after, key, limit, list)
        self._convert_page = convert_page

    async def __anext__(self) -> list[Any]:
        rows = await self._next_page()
        convert = self._convert_page
        return rows if convert is None else convert(rows)


class CheckedChunks(Pages[list[Any]]):
    """Like :class:`PageChunks`, but a page is checked row by row by
    ``check(rows, start)``, which returns the rows from ``rows[start]`` on, converted,
    up to (excluding) the first one it refuses, and that row's index (``len(rows)`` if
    none), and raises if ``rows[start]`` itself is refused. So the rows before a refused
    one are given as a chunk, the next ``__anext__`` raises, and the one after that
    goes on with the rows after it."""

    def __init__(
        self,
        read_page: ReadPage,
        after: int,
        key: int,
        limit: int,
        check: Callable[[list[Any], int], tuple[list[Any], int]],
    ) -> None:
        super().__init__(read_page, after, key, limit, list)
        self._check = check

    async def __anext__(self) -> list[Any]:
        if self._index >= len(self._rows):
            self._rows = await self._next_page()
            self._index = 0
        start = self._index
        self._index = start + 1  # past the row, if it is refused
        chunk, self._index = self._check(self._rows, start)
        return chunk
