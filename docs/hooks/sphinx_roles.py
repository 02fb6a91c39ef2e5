"""A griffe extension for the documentation site: Sphinx roles in docstrings as links.

The docstrings of ``actors`` and ``supervision`` use Sphinx's inline roles
(:class:`ActorRef`, :meth:`stop`, :func:`~actors.open_system`). mkdocstrings renders
docstrings as Markdown, where such a role would show as ``:class:`` before the code.
This extension rewrites each role before rendering:

- a target that resolves, from the docstring's own scope, to a public object of this
  project becomes a cross-reference (``[`ActorRef`][actors._ref.ActorRef]``). The
  reference is a required one: if the object is not on any reference page, ``mkdocs build
  --strict`` fails, so a reference page cannot silently lose an object that is linked to;
- anything else (Python's own names, trio, private helpers) becomes plain code.

As in Sphinx, ``~a.b.c`` shows only ``c``, and a leading ``.`` or ``!`` is dropped.

Two other reST forms are rewritten too: a definition list (a term line, then its
definition indented below it) becomes a Markdown one (``def_list``), and a paragraph
ending in ``::`` before a literal block ends in ``:`` (the indented block is already code
in Markdown).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|meth|func|attr|exc|data|mod|obj|const):`([^`]+)`")
_OURS = ("actors", "supervision")
_LITERAL_MARKER = re.compile(r"(?<=\S)::$", re.MULTILINE)
_NOT_A_TERM = re.compile(r"(?:[-*+]|\d+[.)])\s|```|#")


def _display(target: str) -> str:
    if target.startswith("~"):
        return target[1:].rpartition(".")[2]
    return target.lstrip(".!")


def _canonical(obj: griffe.Object, target: str) -> str | None:
    """The canonical path of ``target`` as seen from ``obj``, or None if it is not ours."""
    name = target.lstrip("~.!")
    first, _, rest = name.partition(".")
    try:
        base = obj.resolve(first)
    except griffe.NameResolutionError:
        if first not in _OURS:
            return None
        base = first
    path = f"{base}.{rest}" if rest else base
    if path.partition(".")[0] not in _OURS:
        return None
    return path


def _is_public(collection: griffe.ModulesCollection, path: str) -> str | None:
    """The canonical path of a public object at ``path``, or None.

    Public: every name after the modules of the path is public (no leading underscore),
    and the object is exported by one of the public packages (the ones with reference
    pages) or is a member of such an object.
    """
    try:
        found = collection.get_member(path)
    except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None
    try:
        target = found.final_target if found.is_alias else found
        canonical = target.canonical_path
    except (griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None
    if target.is_module:
        return canonical if _public_path(canonical) else None
    names = []
    top = target
    while not top.is_module:
        names.append(top.name)
        if top.parent is None or top.parent.is_module:
            break
        top = top.parent
    if any(name.startswith("_") for name in names):
        return None
    # The outermost object must be importable from a public module: defined in one, or
    # re-exported by one (``__all__`` of a package, as the reference pages show them).
    paths = [top.canonical_path, *top.aliases]
    if not any(_public_path(p) for p in paths):
        return None
    return canonical


def _public_path(path: str) -> bool:
    return not any(part.startswith("_") for part in path.split("."))


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles in docstrings as Markdown cross-references or code."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        self._walk(pkg, loader.modules_collection)

    # The name of the same hook before griffe 2 (rewriting twice changes nothing).
    on_package_loaded = on_package

    def _walk(self, obj: griffe.Object, collection: griffe.ModulesCollection) -> None:
        if obj.docstring is not None:
            obj.docstring.value = self._rewrite(obj, obj.docstring.value, collection)
        for member in obj.members.values():
            if not member.is_alias:
                self._walk(member, collection)  # type: ignore[arg-type]

    def _rewrite(self, obj: griffe.Object, text: str, collection: griffe.ModulesCollection) -> str:
        def replace(match: re.Match[str]) -> str:
            target = match.group(1)
            shown = f"`{_display(target)}`"
            path = _canonical(obj, target)
            if path is None:
                return shown
            public = _is_public(collection, path)
            if public is None:
                return shown
            return f"[{shown}][{public}]"

        return _definition_lists(_LITERAL_MARKER.sub(":", _ROLE.sub(replace, text)))


def _definition_lists(text: str) -> str:
    """reST definition lists (``term`` then an indented definition) as Markdown ones."""
    lines = text.split("\n")
    out: list[str] = []
    in_list = False  # the last line written belongs to a definition
    i = 0
    while i < len(lines):
        line = lines[i]
        following = lines[i + 1] if i + 1 < len(lines) else ""
        after_blank = not out or not out[-1].strip()
        if (
            line.strip()
            and not line[0].isspace()
            and not _NOT_A_TERM.match(line)
            and following.startswith("    ")
            and following.strip()
            and (after_blank or in_list)
        ):
            if not after_blank:
                out.append("")
            out += [line, ":   " + following[4:]]
            in_list = True
            i += 2
            continue
        in_list = in_list and line.startswith("    ")
        out.append(line)
        i += 1
    return "\n".join(out)
