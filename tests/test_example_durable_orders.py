"""examples/durable_orders.py runs as written: a shop process places orders and is killed
with SIGKILL after 25 of them, a second one resumes, and the audit finds every order
published, shipped and counted in the sales read model exactly once; no process the
example started outlives it.

Real processes, a real nats-server (the example starts its own, or uses the one
``--nats`` names) and real SQLite files; each run is bounded by the subprocess timeout.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from nats_server import SKIP_HINT, find_nats_server, server_required

pytest.importorskip("nats")
pytest.importorskip("trio_asyncio")

pytestmark = [pytest.mark.nats, pytest.mark.crash]

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "durable_orders.py"

# Every line but the PIDs and "as the kill left it" (where the kill caught the pipeline).
REPORT = [
    "shop started (pid N), first",
    "placed 25 orders (acknowledged: in the journal); killing the shop now",
    "the shop was killed (SIGKILL)",
    "as the kill left it: ...",
    "shop started (pid N), resume",
    "placed the 40 orders again: 15 new, 25 placed before",
    "caught up: the outbox (lag 0), the sales projection (lag 0), shipping (40 of 40 orders "
    "shipped)",
    "stream SHOP_ORDERS: 40 events, of 40 orders",
    "shipments: 40 rows, of 40 orders",
    "sales read model (product: orders, units, revenue):",
    "  coffee: 10, 21, 147.00",
    "  mug: 10, 19, 228.00",
    "  tea: 10, 20, 90.00",
    "  teapot: 10, 21, 735.00",
    "  total: 40, 81, 1200.00",
    "the 40 orders placed: 40, 81, 1200.00",
    "dead letters: 0",
    "all totals right: every order published, shipped and counted exactly once",
]
KILL_LEFT = re.compile(
    r"as the kill left it: (\d+) orders in the journal, (\d+) in the stream, (\d+) in the "
    r"sales read model, (\d+) shipped"
)
SERVER = re.compile(r"nats-server started \(pid (\d+)\) on nats://127\.0\.0\.1:\d+, with a .*")


def run_example(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *argv],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=cwd,
    )


def still_running(pid: int) -> bool:
    """Whether ``pid`` is a live process of the example (a shop or a nats-server)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False  # gone (a zombie has an empty command line: dead too)
    return b"durable_orders.py" in command or b"nats-server" in command


def check_the_report(result: subprocess.CompletedProcess[str], *, own_server: bool) -> list[int]:
    """The example succeeded and printed the report; returns the PIDs it started."""
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert " ERROR " not in result.stderr, result.stderr
    lines = result.stdout.splitlines()
    pids = []
    if own_server:
        server = SERVER.fullmatch(lines.pop(0))
        assert server is not None, result.stdout
        pids.append(int(server[1]))
    else:
        assert "nats-server started" not in result.stdout

    shops = [re.fullmatch(r"shop started \(pid (\d+)\), (first|resume)", line) for line in lines]
    pids.extend(int(m[1]) for m in shops if m is not None)
    assert len(pids) == (3 if own_server else 2), result.stdout

    kill_left = [KILL_LEFT.fullmatch(line) for line in lines]
    [left] = [m for m in kill_left if m is not None]
    journal, stream, counted, shipped = (int(n) for n in left.groups())
    # The kill came after exactly 25 acknowledged orders: the journal holds them, and the
    # stages downstream of it hold at most as many.
    assert journal == 25, left[0]
    assert stream <= journal, left[0]
    assert counted <= journal, left[0]
    assert shipped <= stream, left[0]

    masked = [re.sub(r"\(pid \d+\)", "(pid N)", line) for line in lines]
    masked = ["as the kill left it: ..." if KILL_LEFT.fullmatch(x) else x for x in masked]
    assert masked == REPORT
    return pids


def test_the_shop_killed_mid_run_resumes_and_every_total_is_right(tmp_path: Path) -> None:
    if find_nats_server() is None:
        reason = f"no nats-server on PATH, in /usr/sbin or in /usr/bin ({SKIP_HINT})"
        if server_required():
            pytest.fail(
                f"the durable orders example cannot run (a nats-server is required): {reason}"
            )
        pytest.skip(f"the durable orders example needs a nats-server: {reason}")
    result = run_example(cwd=tmp_path)
    pids = check_the_report(result, own_server=True)
    assert [pid for pid in pids if still_running(pid)] == []
    assert list(tmp_path.iterdir()) == []  # (its journal, read models and store were temporary)


def test_the_example_uses_the_server_it_is_given_again_and_again(
    nats_url: str, tmp_path: Path
) -> None:
    """On a server given with ``--nats`` the example starts no server; a second run finds
    the first run's streams there and starts from empty ones, with the same report."""
    for _ in range(2):
        result = run_example("--nats", nats_url, cwd=tmp_path)
        pids = check_the_report(result, own_server=False)
        assert [pid for pid in pids if still_running(pid)] == []
