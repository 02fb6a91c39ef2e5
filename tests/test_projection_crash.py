"""An exactly-once projection killed with SIGKILL in the middle of its run, again and
again, loses no event and applies none twice.

Each child (``projection_child.py``) projects the SQLite journal into a SQLite read model
(one row per event, no key: an event applied twice would show), while it writes more
events into the journal; it prints a line as each batch starts inside its transaction,
and the test kills it a seeded few milliseconds after a seeded number of such lines:
mostly in the middle of a transaction, sometimes just after one. A last child runs until
it has caught up. The read model must then hold exactly the journal's tagged events, in
commit order, and the stored offset the last of them.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest
import trio
from projection_events import write_sales

from actors.persistence import open_sqlite_journal

pytestmark = pytest.mark.crash

CHILD = Path(__file__).with_name("projection_child.py")
ROUNDS = 10


class Child:
    """A running ``projection_child.py``; a thread reads its stdout lines into a queue."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        assert self.proc.stdout is not None
        stdout = self.proc.stdout
        self._reader = threading.Thread(target=self._read, args=(stdout,), daemon=True)
        self._reader.start()

    def _read(self, stdout: object) -> None:
        for line in stdout:  # type: ignore[attr-defined]
            self.lines.put(line.strip())
        self.lines.put("")  # end of output

    def next_line(self) -> str:
        try:
            line = self.lines.get(timeout=60)
        except queue.Empty:
            self.kill()
            pytest.fail(f"the child printed nothing for 60 s; stderr:\n{self.errors}")
        if not line:
            self.wait()
            pytest.fail(f"the child ended ({self.proc.returncode}); stderr:\n{self.errors}")
        return line

    def kill(self) -> None:
        """SIGKILL it if it still runs, then :meth:`wait`."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.wait()

    def wait(self) -> None:
        """Wait for its end, keep its stderr in :attr:`errors` and close its pipes."""
        self.proc.wait(timeout=60)
        self._reader.join(timeout=30)
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        if not self.proc.stderr.closed:
            self.errors = self.proc.stderr.read()
            self.proc.stderr.close()
        self.proc.stdout.close()

    errors = "(still running)"


async def prewrite(journal: Path) -> None:
    async with open_sqlite_journal(journal) as opened:
        for pid in ("a", "b"):
            await write_sales(opened, pid, 1, 100)


def tagged_events(journal: Path) -> list[tuple[str, int, int]]:
    with closing(sqlite3.connect(journal)) as conn:
        return conn.execute(
            "SELECT e.persistence_id, e.seq, e.event_offset FROM event_tags t JOIN events e "
            "ON e.event_offset = t.event_offset WHERE t.tag = 'sale' ORDER BY e.event_offset"
        ).fetchall()


def stored_offset(model: Path) -> int:
    with closing(sqlite3.connect(model)) as conn:
        rows = conn.execute("SELECT current_offset FROM projection_offsets").fetchall()
    return rows[0][0] if rows else 0


def test_sigkill_mid_run_loses_no_event_and_applies_none_twice(tmp_path: Path) -> None:
    journal, model = tmp_path / "journal.db", tmp_path / "read.db"
    trio.run(prewrite, journal)
    rng = random.Random(20_26)
    for round_ in range(ROUNDS):
        child = Child(str(journal), str(model), "--writer", f"w{round_}", "--events", "40")
        try:
            assert child.next_line() == "started"
            for _ in range(rng.randint(1, 6)):
                assert child.next_line().startswith("batch ")
            time.sleep(rng.uniform(0.0, 0.006))  # anywhere in (or just after) a transaction
        finally:
            child.kill()
        assert child.proc.returncode == -signal.SIGKILL
    before = stored_offset(model)
    assert before > 0
    final = Child(str(journal), str(model), "--finish")
    try:
        assert final.next_line() == "started"
        line = final.next_line()
        while line.startswith("batch "):
            line = final.next_line()
        final.wait()
    finally:
        final.kill()
    assert final.proc.returncode == 0, final.errors
    events = tagged_events(journal)
    assert len(events) > 200  # the children wrote some too
    assert line == f"done {events[-1][2]}"
    with closing(sqlite3.connect(model)) as conn:
        applied = conn.execute("SELECT pid, seq, event_offset FROM applied").fetchall()
    assert sorted(applied, key=lambda row: row[2]) == events  # each once: none lost, none twice
    assert stored_offset(model) == events[-1][2]
