"""Every code example in docs/ runs and prints what the page shows.

A ```python block is run as a script; when a ```text block follows it directly, the
script's output must equal that text. Blocks whose first line names a file
(``# test_x.py``, ``# conftest.py``, ``; pytest.ini``, ``# shop_events.py``) are written
together into a folder per page, and if that page has a test file, pytest must pass
there. The same files are written beside each script of the page, which runs in that
folder: a script can import a module the page shows (``from shop_events import ...``)
or run a program it shows (``python stock_room.py``).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)
FILE_HEADER = re.compile(r"^[#;] (\S+\.(?:py|ini|toml))$")


def _blocks(page: Path) -> list[tuple[str, str, int, int]]:
    text = page.read_text()
    return [(m.group(1), m.group(2), m.start(), m.end()) for m in BLOCK.finditer(text)]


def _named_files(page: Path) -> dict[str, str]:
    files = {}
    for lang, code, _, _ in _blocks(page):
        header = FILE_HEADER.match(code.partition("\n")[0])
        if header and lang in ("python", "ini", "toml"):
            files[header.group(1)] = code
    return files


def _scripts() -> list[tuple[str, str, str | None, dict[str, str]]]:
    found = []
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text()
        blocks = _blocks(page)
        files = _named_files(page)
        number = 0
        for i, (lang, code, _, end) in enumerate(blocks):
            if lang != "python" or FILE_HEADER.match(code.partition("\n")[0]):
                continue
            number += 1
            expected = None
            if i + 1 < len(blocks) and blocks[i + 1][0] == "text":
                between = text[end : blocks[i + 1][2]]
                if len(between.strip().splitlines()) <= 1:
                    expected = blocks[i + 1][1]
            found.append((f"{page.stem}#{number}", code, expected, files))
    return found


def _file_sets() -> list[tuple[str, dict[str, str]]]:
    sets = []
    for page in sorted(DOCS.glob("*.md")):
        files = _named_files(page)
        if any(name.startswith("test_") for name in files):
            sets.append((page.stem, files))
    return sets


def test_docs_have_examples() -> None:
    assert len(_scripts()) >= 10


@pytest.mark.parametrize(
    ("where", "code", "expected", "files"), [pytest.param(*s, id=s[0]) for s in _scripts()]
)
def test_docs_example_runs(
    where: str, code: str, expected: str | None, files: dict[str, str], tmp_path: Path
) -> None:
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    script = tmp_path / "example.py"
    script.write_text(code)
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, f"{where}:\n{result.stderr}"
    if expected is not None:
        assert result.stdout == expected, where


@pytest.mark.parametrize(("page", "files"), [pytest.param(*f, id=f[0]) for f in _file_sets()])
def test_docs_test_files_pass(page: str, files: dict[str, str], tmp_path: Path) -> None:
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"{page}:\n{result.stdout}\n{result.stderr}"
