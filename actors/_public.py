"""What makes the public API look public: runtime objects users must not construct or
subclass, and the public names of everything a package exports.

Runtime objects (``ActorRef``, ``ActorContext``, ``ActorSystem``, ``EventBus``,
``Timers``) are made by the runtime only. Their classes use :class:`NoPublicConstructor`
as their metaclass, as trio does for its own: calling the class raises ``TypeError``,
subclassing it raises ``TypeError``, and the runtime builds instances with
``Class._create(...)``. They are also marked ``@typing.final`` for type checkers.

:func:`export` gives every name a package re-exports from its private modules the public
``__module__`` (and a ``__qualname__`` without the private module), so that tracebacks,
``repr``, pickles by reference and the documentation show ``actors.ActorRef``, not
``actors._ref.ActorRef``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import FunctionType
from typing import Any, TypeVar

_T = TypeVar("_T")


class NoPublicConstructor(type):
    """Metaclass of runtime classes: no public constructor, no subclasses."""

    def __new__(
        mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any
    ) -> NoPublicConstructor:
        for base in bases:
            if isinstance(base, NoPublicConstructor):
                raise TypeError(
                    f"{base.__module__}.{base.__qualname__} is made by the runtime and "
                    "does not support subclassing"
                )
        return super().__new__(mcs, name, bases, namespace, **kwargs)

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"{cls.__module__}.{cls.__qualname__} has no public constructor: the runtime "
            "makes it (spawn returns refs, self.context is the context, open_system "
            "opens a system)"
        )

    def _create(cls: type[_T], *args: Any, **kwargs: Any) -> _T:
        """Build an instance (for the runtime only)."""
        return super().__call__(*args, **kwargs)  # type: ignore[misc, no-any-return]


def export(package: str, namespace: Mapping[str, Any], names: Iterable[str]) -> None:
    """Give each class and function among ``names`` in ``namespace`` (a package's
    globals) the public ``__module__`` ``package``, unless it already belongs to a
    public module, and a top-level object exported under another name that name as its
    ``__qualname__``; enums, attrs classes and plain functions alike. Objects that are
    not classes or functions (constants) are left alone."""
    for name in names:
        obj = namespace[name]
        module = getattr(obj, "__module__", None)
        if not isinstance(obj, type | FunctionType):
            continue
        if not isinstance(module, str) or not _is_private(module):
            continue
        try:
            obj.__module__ = package
            qualname = getattr(obj, "__qualname__", name)
            if qualname != name and "." not in qualname:  # exported under another name
                obj.__qualname__ = obj.__name__ = name
        except (AttributeError, TypeError):  # a builtin or a C type: leave it
            continue


def _is_private(module: str) -> bool:
    return any(part.startswith("_") for part in module.split("."))
