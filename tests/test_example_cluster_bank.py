"""examples/cluster_bank.py runs as written: three node processes host the accounts, the
busiest one is killed, its accounts move to the survivors with every acknowledged
deposit, and no process the example started outlives it.

Real processes and a real nats-server (the example starts its own, or uses the one
``--nats`` names); each run is bounded by the subprocess timeout.
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

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "cluster_bank.py"
ACCOUNT_COUNT = 12
BALANCE = re.compile(r"^(\w+): (\d+) on (n\d)(?: \(moved from (n\d); (\d+) events replayed\))?$")


def run_example(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *argv],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=cwd,
    )


def pids_started(stdout: str) -> list[int]:
    """The PIDs the example says it started: the nats-server's, if any, and the nodes'."""
    server = re.findall(r"^nats-server started \(pid (\d+)\)", stdout, re.MULTILINE)
    nodes = re.findall(r"^node n\d ready \(pid (\d+)\), hosting accounts$", stdout, re.MULTILINE)
    assert len(nodes) == 3, stdout
    return [int(pid) for pid in [*server, *nodes]]


def still_running(pid: int) -> bool:
    """Whether ``pid`` is a live process of the example (a node or a nats-server)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False  # gone (a zombie has an empty command line: dead too)
    return b"cluster_bank.py" in command or b"nats-server" in command


def check_the_story(stdout: str) -> None:
    """The accounts were placed, the busiest node killed, its accounts (and only they)
    moved to the survivors, and every balance is the acknowledged one."""
    lines = stdout.splitlines()
    [killed] = [line for line in lines if line.startswith("killed ")]
    found = re.fullmatch(r"killed (n\d) \(pid \d+\) with SIGKILL; it hosted (.+)", killed)
    assert found is not None, killed
    victim, listed = found[1], found[2].split(", ")
    cut = lines.index(killed)
    before = [m for m in map(BALANCE.match, lines[:cut]) if m is not None]
    after = [m for m in map(BALANCE.match, lines[cut:]) if m is not None]
    assert len(before) == len(after) == ACCOUNT_COUNT, stdout

    placed = {m[1]: (int(m[2]), m[3]) for m in before}
    assert {m[1] for m in before if m[3] == victim} == set(listed)
    counts = {node: [n for _, n in placed.values()].count(node) for node in ("n1", "n2", "n3")}
    assert counts[victim] == max(counts.values()), counts  # the busiest node was killed
    assert all(m[4] is None for m in before)

    moved = []
    for m in after:
        name, balance, node, moved_from = m[1], int(m[2]), m[3], m[4]
        assert balance == placed[name][0], m[0]  # the acknowledged balance
        assert node != victim, m[0]
        if placed[name][1] == victim:
            assert moved_from == victim, m[0]
            assert int(m[5]) == 3, m[0]  # recovered from its 3 events in the journal
            moved.append(name)
        else:
            assert (node, moved_from) == (placed[name][1], None), m[0]  # it stayed put
    assert moved, stdout
    assert f"all {ACCOUNT_COUNT} balances intact after losing {victim}" in lines
    assert any(line.startswith("bob: withdrawal of 1000 refused: bob has only ") for line in lines)


def test_the_cluster_bank_survives_a_node_killed(tmp_path: Path) -> None:
    if find_nats_server() is None:
        reason = f"no nats-server on PATH, in /usr/sbin or in /usr/bin ({SKIP_HINT})"
        if server_required():
            pytest.fail(f"the cluster example cannot run (a nats-server is required): {reason}")
        pytest.skip(f"the cluster example needs a nats-server: {reason}")
    result = run_example(cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout.startswith("nats-server started (pid "), result.stdout
    check_the_story(result.stdout)
    pids = pids_started(result.stdout)
    assert len(pids) == 4
    assert [pid for pid in pids if still_running(pid)] == []
    assert list(tmp_path.iterdir()) == []  # (its journal and store were temporary)


def test_the_cluster_bank_uses_the_server_it_is_given(nats_url: str, tmp_path: Path) -> None:
    result = run_example("--nats", nats_url, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "nats-server started" not in result.stdout
    check_the_story(result.stdout)
    pids = pids_started(result.stdout)
    assert [pid for pid in pids if still_running(pid)] == []
