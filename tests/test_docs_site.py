"""The documentation site (mkdocs.yml) lists every page in docs/, and only pages that exist.

`mkdocs build --strict` in CI catches the same, but only where the docs extra is
installed; this check needs nothing beyond the standard library, so a page added to docs/
without a place in the nav fails the ordinary test run too.
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
MKDOCS_YML = ROOT / "mkdocs.yml"


def nav_pages() -> list[str]:
    """The .md paths in the top-level ``nav:`` block of mkdocs.yml, in order."""
    pages: list[str] = []
    in_nav = False
    for line in MKDOCS_YML.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace():
            in_nav = line.rstrip() == "nav:"
            continue
        if in_nav:
            pages.extend(re.findall(r"[\w./-]+\.md\b", line))
    return pages


def test_nav_lists_every_page_once() -> None:
    pages = nav_pages()
    assert pages, "no pages found in the nav of mkdocs.yml"
    duplicates = sorted({page for page in pages if pages.count(page) > 1})
    assert not duplicates, f"pages listed more than once in mkdocs.yml's nav: {duplicates}"
    on_disk = {path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md")}
    missing = sorted(on_disk - set(pages))
    assert not missing, f"pages in docs/ that mkdocs.yml's nav does not list: {missing}"
    absent = sorted(set(pages) - on_disk)
    assert not absent, f"pages in mkdocs.yml's nav that docs/ does not have: {absent}"


def test_home_page_comes_first() -> None:
    assert nav_pages()[0] == "index.md"
