"""Package metadata (supported Pythons, the testkit extra) and how .ci/run finds the
Pythons it tests on."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUPPORTED = ("3.11", "3.12", "3.13")


def _project() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        project: dict[str, object] = tomllib.load(file)["project"]
    return project


def test_the_metadata_lists_the_supported_pythons() -> None:
    project = _project()
    assert project["requires-python"] == ">=3.11"
    classifiers = project["classifiers"]
    assert isinstance(classifiers, list)
    listed = [c.rpartition(" :: ")[2] for c in classifiers if re.search(r":: 3\.\d+$", c)]
    assert tuple(listed) == SUPPORTED
    assert sys.version_info >= (3, 11)


def test_the_testkit_extra_holds_only_what_the_testkit_needs() -> None:
    extras = _project()["optional-dependencies"]
    assert isinstance(extras, dict)
    assert [re.split(r"[<>=\[]", req)[0] for req in extras["testkit"]] == [
        "pytest",
        "pytest-trio",
    ]
    assert "trio-actors[testkit]" in extras["test"]  # the suite's extra includes it
    docs = (ROOT / "docs" / "testing.md").read_text()
    assert "pip install 'trio-actors[testkit]'" in docs


def _dry_run(versions: str) -> str:
    result = subprocess.run(
        ["bash", str(ROOT / ".ci" / "run")],
        env={
            **os.environ,
            # This interpreter's directory first: it holds python3.X (a venv does).
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
            "CI_DRY_RUN": "1",
            "CI_PYTHONS": versions,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout


def test_ci_finds_this_python_and_skips_a_missing_one() -> None:
    current = f"{sys.version_info[0]}.{sys.version_info[1]}"
    output = _dry_run(f"{current} 3.99")
    assert "Python 3.99 not found: skipped" in output
    (path,) = re.findall(rf"would run the tests on Python {current} \((.+)\)", output)
    version = subprocess.run(
        [path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert version == current
    assert "would run the tests on Python 3.99" not in output
