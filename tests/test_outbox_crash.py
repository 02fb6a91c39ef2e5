"""The outbox killed with SIGKILL between the journal's commit and the publish, and
between the publish and the offset's save, on a real SQLite journal and a real
JetStream: after a second process resumes it, the stream holds every persisted event
exactly once, in commit order, with the message id ``persistence_id/seq``.

The child (``outbox_child.py``) blocks at the kill point and says so on its stdout; the
test SIGKILLs it on that line (no timing involved), looks at the stream and the stored
offset as the kill left them, and runs a resuming child."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
import trio

pytest.importorskip("nats")
pytest.importorskip("trio_asyncio")

from outbox_events import Placed, stored

from actors.cluster import PickleCodec
from actors.persistence import open_sqlite_journal
from actors.streams import open_jetstream

pytestmark = [pytest.mark.nats, pytest.mark.crash]

HERE = Path(__file__).parent
CHILD = HERE / "outbox_child.py"
ITEMS = {"order-a": ["one", "two", "four", "five", "six"], "order-b": ["three"]}


class Child:
    """A running ``outbox_child.py``, its stdout read line by line."""

    def __init__(self, process: trio.Process, errors: Path) -> None:
        self.process = process
        self.errors = errors
        self._buffer = b""

    async def line(self) -> str:
        assert self.process.stdout is not None
        with trio.move_on_after(60):
            while b"\n" not in self._buffer:
                chunk = await self.process.stdout.receive_some()
                if not chunk:
                    break
                self._buffer += chunk
        if b"\n" not in self._buffer:
            self.kill()
            await self.process.wait()
            pytest.fail(
                f"the child printed no line (exit {self.process.returncode}); "
                f"stderr:\n{self.errors.read_text()}"
            )
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def kill(self) -> None:
        if self.process.returncode is None:
            os.kill(self.process.pid, signal.SIGKILL)


async def start(tmp_path: Path, nats_url: str, mode: str) -> Child:
    errors = tmp_path / f"{mode}.stderr"
    with errors.open("wb") as sink:
        process = await trio.lowlevel.open_process(
            [
                sys.executable,
                str(CHILD),
                nats_url,
                str(tmp_path / "journal.db"),
                str(tmp_path / "offsets.db"),
                mode,
            ],
            stdout=subprocess.PIPE,
            stderr=sink,
        )
    return Child(process, errors)


def stored_offset(path: Path) -> int | None:
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute(
            "SELECT current_offset FROM projection_offsets WHERE projection_name = 'outbox-order'"
        ).fetchall()
    return rows[0][0] if rows else None


async def the_stream(nats_url: str) -> list[tuple[str, str, object]]:
    """``(subject, message id, decoded event)`` of every event of ORDERS, in order."""
    decode = PickleCodec().decode_message
    async with open_jetstream(nats_url) as engine:
        return [(s, m, decode(data)) for s, m, data in await stored(engine)]


async def committed(journal: Path) -> list[str]:
    async with open_sqlite_journal(journal, create=False) as opened:
        return [f"{r.persistence_id}/{r.seq}" async for r in opened.events_by_tag("order")]


def expected_stream(msg_ids: list[str]) -> list[tuple[str, str, object]]:
    items = {pid: iter(names) for pid, names in ITEMS.items()}
    result: list[tuple[str, str, object]] = []
    for msg_id in msg_ids:
        pid = msg_id.split("/")[0]
        result.append((f"orders.{pid}", msg_id, Placed(pid, next(items[pid]))))
    return result


ALL = ["order-a/1", "order-a/2", "order-b/1", "order-a/3", "order-a/4", "order-a/5"]


async def kill_at(tmp_path: Path, nats_url: str, mode: str, blocked: str) -> None:
    child = await start(tmp_path, nats_url, mode)
    try:
        assert await child.line() == "caught-up 3"
        assert await child.line() == blocked
    finally:
        child.kill()
        await child.process.wait()
    assert child.process.returncode == -signal.SIGKILL


async def resume(tmp_path: Path, nats_url: str) -> str:
    child = await start(tmp_path, nats_url, "resume")
    try:
        line = await child.line()
        with trio.fail_after(60):
            await child.process.wait()
    finally:
        child.kill()
    assert child.process.returncode == 0, (tmp_path / "resume.stderr").read_text()
    return line


async def test_killed_after_the_commit_before_the_publish_loses_nothing(
    tmp_path: Path, nats_url: str
) -> None:
    await kill_at(tmp_path, nats_url, "before-publish", "blocked before publishing order-a/3")
    # As the kill left it: six events committed, three published, offset 3.
    assert await committed(tmp_path / "journal.db") == ALL
    assert await the_stream(nats_url) == expected_stream(ALL[:3])
    assert stored_offset(tmp_path / "offsets.db") == 3

    assert await resume(tmp_path, nats_url) == "done 6 published 3 duplicates 0"
    assert await the_stream(nats_url) == expected_stream(ALL)  # each once, in commit order
    assert stored_offset(tmp_path / "offsets.db") == 6


async def test_killed_after_the_publish_before_the_offset_is_stored_duplicates_nothing(
    tmp_path: Path, nats_url: str
) -> None:
    await kill_at(tmp_path, nats_url, "before-save", "blocked before saving 6")
    # As the kill left it: six events committed and published, but the offset still 3.
    assert await committed(tmp_path / "journal.db") == ALL
    assert await the_stream(nats_url) == expected_stream(ALL)
    assert stored_offset(tmp_path / "offsets.db") == 3

    # The resumed outbox publishes the last three again: JetStream drops them.
    assert await resume(tmp_path, nats_url) == "done 6 published 0 duplicates 3"
    assert await the_stream(nats_url) == expected_stream(ALL)
    assert stored_offset(tmp_path / "offsets.db") == 6
