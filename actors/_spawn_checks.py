"""Checking, at the call of ``spawn``, the factory it is given and the arguments for it.

``spawn(factory, *args, **kwargs)`` creates the instance later, in the new actor's own
task (``Lifecycle._start``). Without a check at the call, an instance given instead of
its class, or arguments that do not fit the constructor, would only fail there, as a
failure of the actor far from the line that made the mistake. :func:`check_factory`
raises ``TypeError`` at the call instead.

The shape of a factory's signature is worked out once per factory (``inspect.signature``
costs some 15 µs) and kept in a weak dictionary; checking arguments against a known
shape costs well under a microsecond, and nothing when there are none to check and the
factory needs none. Factories without a signature (some builtins) are not checked.
"""

from __future__ import annotations

import functools
import inspect
import weakref
from typing import Any, Final

from ._actor import Actor

_POSITIONAL: Final = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class _Shape:
    """What a factory accepts, precomputed from its signature for a quick check."""

    __slots__ = (
        "keywords",
        "positional",
        "positional_only",
        "required",
        "signature",
        "var_keyword",
        "var_positional",
    )

    def __init__(self, signature: inspect.Signature) -> None:
        self.signature = signature
        params = list(signature.parameters.values())
        self.positional = tuple(p.name for p in params if p.kind in _POSITIONAL)
        self.positional_only = frozenset(
            p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_ONLY
        )
        self.keywords = frozenset(
            p.name
            for p in params
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        )
        self.required = frozenset(
            p.name
            for p in params
            if p.default is inspect.Parameter.empty
            and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        )
        self.var_positional = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)
        self.var_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)

    def fits(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """Whether the arguments surely bind (``False`` may be wrong in rare cases, such
        as a positional-only name also caught by ``**kwargs``: the caller then asks
        ``Signature.bind``, which decides)."""
        positional = self.positional
        if len(args) > len(positional) and not self.var_positional:
            return False
        given = positional[: len(args)]
        for key in kwargs:
            if key in given or key in self.positional_only:
                return False
            if key not in self.keywords and not self.var_keyword:
                return False
        return all(name in given or name in kwargs for name in self.required)


# Factory -> its shape, or None when it has no signature to check against.
_shapes: weakref.WeakKeyDictionary[Any, _Shape | None] = weakref.WeakKeyDictionary()


def _signature(factory: Any) -> inspect.Signature | None:
    if (
        isinstance(factory, type)
        and issubclass(factory, Actor)
        and factory.__init__ is object.__init__
        and factory.__new__ is Actor.__new__
    ):
        # Actor.__new__ takes anything, and object.__init__ ignores what it is given
        # then: the class takes no arguments, whatever inspect says.
        return inspect.Signature()
    try:
        return inspect.signature(factory)
    except (TypeError, ValueError):  # no signature (a builtin): nothing to check
        return None


def _shape_of(factory: Any) -> _Shape | None:
    try:
        return _shapes[factory]
    except KeyError:
        cacheable = True
    except TypeError:  # not hashable, or no weak reference to it: not cached
        cacheable = False
    signature = _signature(factory)
    shape = None if signature is None else _Shape(signature)
    if cacheable:
        _shapes[factory] = shape
    return shape


def _name_of(factory: Any) -> str:
    return getattr(factory, "__qualname__", None) or repr(factory)


def _plain(signature: inspect.Signature) -> str:
    """The signature without annotations: ``(greeting, *, loud=False)``."""
    empty = inspect.Parameter.empty
    params = [p.replace(annotation=empty) for p in signature.parameters.values()]
    return str(signature.replace(parameters=params, return_annotation=empty))


def _describe_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    text = ", ".join(parts)
    return f"({text})" if len(text) <= 200 else f"({text[:197]}...)"


def check_factory(factory: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Raise ``TypeError`` unless ``factory`` is callable (a class, not an instance)
    and ``factory(*args, **kwargs)`` binds to its signature."""
    if not callable(factory):
        if isinstance(factory, Actor):
            name = type(factory).__qualname__
            raise TypeError(
                "spawn takes the actor class (or a factory), not an instance: "
                f"spawn({name}, ...) rather than spawn({name}(...)); the runtime creates "
                "the instance in the new actor's task"
            )
        raise TypeError(
            "spawn takes an actor class (or a factory that returns an actor instance), "
            f"got {factory!r} of type {type(factory).__qualname__}"
        )
    if isinstance(factory, type) and not issubclass(factory, Actor):
        raise TypeError(
            f"spawn takes an actor class, a subclass of actors.Actor; {factory.__qualname__} "
            "is not one (or pass a factory function that returns an actor instance)"
        )
    # A partial is checked through the callable it wraps (cached once for all partials).
    target = factory
    while isinstance(target, functools.partial):
        args = (*target.args, *args)
        kwargs = {**target.keywords, **kwargs}
        target = target.func
    shape = _shape_of(target)
    if shape is None or ((args or kwargs) and shape.fits(args, kwargs)):
        return
    if not args and not kwargs and not shape.required:
        return
    try:
        shape.signature.bind(*args, **kwargs)
    except TypeError as error:
        name = _name_of(target)
        raise TypeError(
            f"cannot spawn {name}: its arguments {_describe_arguments(args, kwargs)} do not "
            f"fit {name}{_plain(shape.signature)}: {error}. spawn(factory, *args, **kwargs) passes "
            "the arguments after the factory (and every keyword but name, mailbox, "
            "throughput and supervisor_strategy) to it"
        ) from error
