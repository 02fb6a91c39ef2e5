"""Every script in examples/ runs as written and prints what its docs promise."""

from __future__ import annotations

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
    # The README's main job, run twice on one journal: the second run recovers.
    "bank.py": [
        "new journal: opening accounts",
        "salary paid: {'alice': 130, 'bob': 20}",
        "transfer: t1",
        "refused: bob: balance 50 < 1000",
        "bob: restarted after Crash('bob crashed'), balance 50 recovered",
        "bob after the crash: 50",
        "bank: finished transfer t3 after a restart",
        "balances: {'alice': 110, 'bob': 40} total: 150",
        "--- second run ---",
        "recovered from the journal: {'alice': 110, 'bob': 40}",
        "salary paid: {'alice': 140, 'bob': 40}",
        "transfer: t4",
        "refused: bob: balance 70 < 1000",
        "bob: restarted after Crash('bob crashed'), balance 70 recovered",
        "bob after the crash: 70",
        "bank: finished transfer t6 after a restart",
        "balances: {'alice': 120, 'bob': 60} total: 180",
    ],
}
RUNS = {"bank.py": 2}


def test_every_example_is_covered() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_runs(script: str, tmp_path: Path) -> None:
    lines: list[str] = []
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
        assert result.stderr == ""
        lines.extend(result.stdout.splitlines())
    assert lines == EXPECTED[script]


def test_readme_example_runs() -> None:
    readme = (EXAMPLES.parent / "README.md").read_text()
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "55\n"
