"""Every script in examples/ runs as written and prints what its docs promise."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

EXPECTED = {
    "order_pipeline.py": [
        "every customer on exactly one worker: True",
        "each customer's events in publish order: True",
        "workers in use: 3 of 3",
        "audit entries: 45 first: ada/10/placed last: eve/34/shipped",
        "dead letters: [('fay', 'no_routees')]",
    ],
    "supervision_tree.py": [
        "store: up",
        "fetcher: up",
        "fetcher: down",
        "monitor: dead letter 'ftp://old.example.org' (failed)",
        "fetcher: restarted after ValueError(\"cannot fetch 'ftp://old.example.org'\")",
        "monitor: /user/services/fetcher restarted",
        "pages stored: 2",
        "same fetcher ref: True",
        "fetcher: down",
        "monitor: dead letter 'gopher://1' (failed)",
        "fetcher: restarted after ValueError(\"cannot fetch 'gopher://1'\")",
        "monitor: /user/services/fetcher restarted",
        "fetcher: down",
        "monitor: dead letter 'gopher://2' (failed)",
        "monitor: /user/services gave up on /user/services/fetcher",
        "store: down",
        "system ended: /user/services: supervisor gave up: child 'fetcher' failed with "
        "ValueError(\"cannot fetch 'gopher://2'\") after 2 restart(s) within 10 s",
    ],
    # Hashing on worker processes: times masked (MASKS); the killed worker's tiles are
    # asked again, and the digest is that of the single-process run.
    "cpu_workers.py": [
        "48 tiles hashed by one actor in this process: N s",
        "48 tiles over 2 worker processes: N s (Nx faster)",
        "48 tiles, worker w1 killed (SIGKILL) after 24 tiles: N s, N tiles asked again",
        "w1 replaced by a new process: True (restarts: 1, state: up)",
        "combined digest 59dfea4d31916190; the same in all three runs: True",
    ],
    "hello.py": [
        "hello, world!",
        "hello, trio!",
        "/user/greeter greeted 2 times",
    ],
    "ask.py": [
        "total: 55",
        "refused: cannot add a negative amount (-1)",
        "still running, total: 55",
    ],
    "core_tour.py": [
        "opened: /user/bank/alice",
        "transfer: 70",
        "refused: bob: balance 90 < 500",
        "alice after audit: 35 (held until the audit ended: True)",
        "balances: {'alice': 35, 'bob': 90}",
        "closed accounts: ['bob']",
        "bob is gone: True",
        "dead letters: ['Deposit to bob'] count: 1",
    ],
    "chaos_bank.py": [
        "20 seeded runs, 191 faults injected",
        "every run: no money created or lost, no negative balance",
        "balances of seed 0: {'alice': 42, 'bob': 97, 'carol': 102, 'dave': 159}",
    ],
    # The README's main job, run twice on one journal: the second run recovers. README.md
    # (set-up) says what each line means.
    "bank.py": [
        "new journal bank-journal.db: opening the accounts alice (100) and bob (20)",
        "alice is paid a salary of 30; balances: {'alice': 130, 'bob': 20}",
        "transfer t1 done: 30 from alice to bob; balances: {'alice': 100, 'bob': 50}",
        "transfer t2 refused: 1000 from bob to alice, but bob has only 50; nothing moved",
        "bob: crashing on purpose",
        "bob: restarted by the bank after Crash('bob crashed on purpose'); balance 50 "
        "recovered from its journal",
        "bob's balance, asked after its crash: 50",
        "bank: crashing on purpose in the middle of transfer t3 (10 taken from bob, not yet "
        "paid to alice)",
        "bank: restarted after Crash('the bank crashed in the middle of transfer t3'); "
        "recovered from its journal: accounts alice and bob, 3 transfers; finished transfer "
        "t3 (10 from bob to alice)",
        "balances at the end of this run: {'alice': 110, 'bob': 40}, total 150 (120 paid in "
        "at opening + 30 of salary per run: no money created or lost)",
        "--- second run ---",
        "journal bank-journal.db found: balances recovered from it: {'alice': 110, 'bob': 40}",
        "alice is paid a salary of 30; balances: {'alice': 140, 'bob': 40}",
        "transfer t4 done: 30 from alice to bob; balances: {'alice': 110, 'bob': 70}",
        "transfer t5 refused: 1000 from bob to alice, but bob has only 70; nothing moved",
        "bob: crashing on purpose",
        "bob: restarted by the bank after Crash('bob crashed on purpose'); balance 70 "
        "recovered from its journal",
        "bob's balance, asked after its crash: 70",
        "bank: crashing on purpose in the middle of transfer t6 (10 taken from bob, not yet "
        "paid to alice)",
        "bank: restarted after Crash('the bank crashed in the middle of transfer t6'); "
        "recovered from its journal: accounts alice and bob, 6 transfers; finished transfer "
        "t6 (10 from bob to alice)",
        "balances at the end of this run: {'alice': 120, 'bob': 60}, total 180 (120 paid in "
        "at opening + 30 of salary per run: no money created or lost)",
    ],
}
RUNS = {"bank.py": 2}

# Examples that print figures that vary from run to run (times, a speed-up, how many asks
# were made again, PIDs): each pattern is replaced before comparing, on stdout and stderr.
MASKS = {
    "cpu_workers.py": [
        (r"\d+\.\d+", "N"),  # seconds and the speed-up
        (r"\b[1-9]\d* tiles asked again", "N tiles asked again"),  # at least one
        (r"\(pid \d+\)", "(pid N)"),
    ],
}

# What examples print on stderr: the runtime's one line for each failure, give-up and lost
# message, shown while no logging is configured (docs/logging.md); a restart delay drawn
# with jitter is written "N".
STDERR = {
    "bank.py": [
        "WARNING actors.supervision: /user/bank/bob failed on CrashNow: Crash('bob crashed "
        "on purpose'); restarting it in N s",
        "WARNING actors.supervision: /user/bank failed on Transfer: Crash('the bank crashed "
        "in the middle of transfer t3'); restarting it",
        "WARNING actors.supervision: /user/bank/bob failed on CrashNow: Crash('bob crashed "
        "on purpose'); restarting it in N s",
        "WARNING actors.supervision: /user/bank failed on Transfer: Crash('the bank crashed "
        "in the middle of transfer t6'); restarting it",
    ],
    "cpu_workers.py": [
        "ERROR actors.workers: worker w1 (pid N) was lost: killed by SIGKILL",
        "WARNING actors.supervision: /user/hasher-1 failed: ProcessLost('worker process w1 "
        "(pid N) was lost: killed by SIGKILL'); restarting it",
    ],
    "core_tour.py": [
        "WARNING actors.deadletters: dead letter (stopped) (no sender) -> /user/bank/bob: Deposit",
    ],
    "order_pipeline.py": [
        "WARNING actors.deadletters: dead letter (no_routees) (no sender) -> /user/workers: "
        "OrderEvent",
    ],
    "supervision_tree.py": [
        "WARNING actors.supervision: /user/services/fetcher failed on str: "
        "ValueError(\"cannot fetch 'ftp://old.example.org'\"); restarting it in 0.01 s",
        "WARNING actors.supervision: /user/services/fetcher failed on str: "
        "ValueError(\"cannot fetch 'gopher://1'\"); restarting it in 0.02 s",
        "ERROR actors.supervision: /user/services/fetcher failed on str: "
        "ValueError(\"cannot fetch 'gopher://2'\"); its supervisor /user/services gives up "
        "(too many restarts) and fails in turn",
        "WARNING actors.supervision: /user/services failed: TooManyRestarts('fetcher', "
        "ValueError(\"cannot fetch 'gopher://2'\"), 2, 10.0); escalated by /user to its own "
        "supervisor",
        "ERROR actors.supervision: failure of /user/services reached /user: "
        "TooManyRestarts('fetcher', ValueError(\"cannot fetch 'gopher://2'\"), 2, 10.0); "
        "actor system 'tree' shuts down and open_system raises UnhandledFailure",
    ],
}
JITTERED = {"bank.py"}


# Modules the examples import, not scripts: they only define things.
MODULES = {"bank_events.py", "example_processes.py"}
# Examples run by a test file of their own (they need a nats-server, started or skipped
# there): examples/cluster_bank.py by tests/test_example_cluster_bank.py,
# examples/durable_orders.py by tests/test_example_durable_orders.py.
OWN_TESTS = {"cluster_bank.py", "durable_orders.py"}


def test_every_example_is_covered() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(
        [*EXPECTED, *MODULES, *OWN_TESTS]
    )


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_runs(script: str, tmp_path: Path) -> None:
    lines: list[str] = []
    errors: list[str] = []
    for run in range(RUNS.get(script, 1)):
        if run:
            lines.append("--- second run ---")
        # In a temporary directory: files an example writes (a journal) land there.
        result = subprocess.run(
            [sys.executable, str(EXAMPLES / script)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr
        # (The examples never block the trio thread: a report of the watchdog can only come
        # from a machine so loaded that starting a thread took 0.1 s.)
        errors.extend(e for e in result.stderr.splitlines() if " actors.watchdog: " not in e)
        lines.extend(result.stdout.splitlines())
    for pattern, replacement in MASKS.get(script, []):
        lines = [re.sub(pattern, replacement, line) for line in lines]
        errors = [re.sub(pattern, replacement, error) for error in errors]
    assert lines == EXPECTED[script]
    if script in JITTERED:
        errors = [re.sub(r"restarting it in [0-9.]+ s$", "restarting it in N s", e) for e in errors]
    assert errors == STDERR.get(script, [])


def test_readme_example_runs() -> None:
    readme = (EXAMPLES.parent / "README.md").read_text()
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "55\n"


def test_bank_runs_from_the_repository_root_and_resets(tmp_path: Path) -> None:
    """``python examples/bank.py`` as README.md says, from the repository's root (the
    events module is found beside the script); a second run recovers, ``--reset``
    starts over."""
    journal = tmp_path / "bank.db"
    firsts = []
    for argv in ([], [], ["--reset"]):
        result = subprocess.run(
            [sys.executable, "examples/bank.py", "--journal", str(journal), *argv],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=EXAMPLES.parent,
        )
        assert result.returncode == 0, result.stderr
        firsts.append(result.stdout.splitlines()[0])
    assert firsts == [
        f"new journal {journal}: opening the accounts alice (100) and bob (20)",
        f"journal {journal} found: balances recovered from it: {{'alice': 110, 'bob': 40}}",
        f"new journal {journal}: opening the accounts alice (100) and bob (20)",
    ]


def test_bank_stores_events_other_programs_can_read(tmp_path: Path) -> None:
    """The bank's events are classes of bank_events.py, not of the script's __main__."""
    subprocess.run(
        [sys.executable, str(EXAMPLES / "bank.py")], check=True, capture_output=True, cwd=tmp_path
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "actors.persistence",
            "--sqlite",
            "bank-journal.db",
            "--import-path",
            str(EXAMPLES),
            "events",
            "bank",
            "--to",
            "1",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert "manifest=bank_events.AccountOpened" in result.stdout
    assert result.stdout.rstrip().endswith("value=AccountOpened(name='alice')")


def test_readme_shows_the_banks_first_run() -> None:
    """README.md's set-up shows the output of a first run of bank.py, as it is."""
    readme = (EXAMPLES.parent / "README.md").read_text()
    setup = readme.split("## Set-up", 1)[1]
    shown = setup.split("```text\n", 1)[1].split("```", 1)[0].splitlines()
    first_run = EXPECTED["bank.py"][: EXPECTED["bank.py"].index("--- second run ---")]
    assert shown == first_run
    second = EXPECTED["bank.py"][len(first_run) + 1]
    assert f"`{second}`" in " ".join(setup.split())
