"""Constructors of the frozen, slotted records that the path of a session not served lately builds.

A frozen dataclass's ``__init__`` sets each field with ``object.__setattr__`` (its own ``__setattr__``
refuses): a call through a slot wrapper per field, about 1,000 instructions each, and that path builds
about forty fields per request (a session, its tokens, the identity and state published for it). These
constructors fill a *filler* instead: a plain class with the record's slots, in their order, whose
attributes Python stores straight into the slot (about 60 instructions each), and then make it an
instance of the record by assigning ``__class__``, which CPython allows between classes of one layout
(the same base and the same slots, checked at import with a probe). Half the cost of setting each slot
through its descriptor, a quarter of ``__init__``'s.

The constructors are written out, one line per field, as ``dataclasses`` writes an ``__init__``: their
source is made of the record's own field names (identifiers) and indexes, nothing from outside. They are
for records that derive or check nothing at construction; one with a ``__post_init__`` is refused at
import unless the caller passes what it derives (``derived_by_caller``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["positional_builder", "stored_builder"]

R = TypeVar("R")


def _filler(cls: type[Any], *, derived_by_caller: bool) -> type[Any]:
    """The plain class with ``cls``'s slots whose instances can become ``cls``'s."""
    if "__slots__" not in cls.__dict__ or not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} is not a slotted dataclass: build it with its __init__")
    if hasattr(cls, "__post_init__") and not derived_by_caller:
        raise TypeError(f"{cls.__name__} derives or checks fields: build it with its __init__")
    slots = tuple(cls.__dict__["__slots__"])
    if cls.__bases__ != (object,) or slots != tuple(f.name for f in dataclasses.fields(cls)):
        raise TypeError(f"{cls.__name__}'s slots are not its fields: build it with its __init__")
    filler = type(f"{cls.__name__}Filler", (), {"__slots__": slots, "__module__": __name__})
    probe: Any = object.__new__(filler)
    probe.__class__ = cls  # a TypeError here: the layouts differ (the record cannot be built this way)
    return filler


def _compiled(name: str, source: str, namespace: dict[str, Any]) -> Callable[..., Any]:
    # The source is made of field names (identifiers, checked by dataclasses) and indexes only.
    exec(source, namespace)  # noqa: S102
    built: Callable[..., Any] = namespace["build"]
    built.__qualname__ = name
    return built


def positional_builder(cls: type[R], *, derived_by_caller: bool = False) -> Callable[..., R]:
    """A constructor of ``cls`` from the values of all its fields, in their order (positional, no
    defaults): for records the guard assembles itself (:class:`~._context.Identity`)."""
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    filler = _filler(cls, derived_by_caller=derived_by_caller)
    values = ", ".join(f"v{i}" for i in range(len(names)))
    sets = "".join(f"    record.{name} = v{i}\n" for i, name in enumerate(names))
    source = (
        f"def build({values}):\n    record = _new(_filler)\n{sets}"
        "    record.__class__ = _cls\n    return record\n"
    )
    return _compiled(
        f"positional_builder.<{cls.__name__}>",
        source,
        {"_new": object.__new__, "_filler": filler, "_cls": cls},
    )


def stored_builder(cls: type[R]) -> Callable[[Any], R]:
    """A constructor of ``cls`` from a stored record's fields (a dict read from JSON). It checks what
    ``cls(**fields)`` checks: a dict, no unknown field, no missing one, defaults filled in (a record
    written before a field existed); it raises ``TypeError`` where that would.

    A record the guard wrote holds every field: read with one subscript each, no set arithmetic. Any
    other goes the careful way."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    if any(f.default_factory is not dataclasses.MISSING for f in fields):
        raise TypeError(f"{cls.__name__} has a default factory: build it with its __init__")
    filler = _filler(cls, derived_by_caller=False)
    names = frozenset(f.name for f in fields)
    defaults = {f.name: f.default for f in fields if f.default is not dataclasses.MISSING}
    required = names - defaults.keys()

    def careful(values: Any) -> R:
        if not isinstance(values, dict):
            raise TypeError(f"a stored {cls.__name__} is not an object")
        keys = values.keys()
        if not (keys <= names and required <= keys):
            raise TypeError(f"a stored {cls.__name__} has other fields than {sorted(names)}")
        record = object.__new__(filler)
        for name in names:
            setattr(record, name, values[name] if name in values else defaults[name])
        record.__class__ = cls
        return record  # type: ignore[no-any-return]

    sets = "".join(f"        record.{f.name} = values[{f.name!r}]\n" for f in fields)
    source = (
        "def build(values):\n"
        f"    if type(values) is not dict or len(values) != {len(fields)}:\n"
        "        return _careful(values)\n"
        "    record = _new(_filler)\n"
        "    try:\n"
        f"{sets}"
        "    except KeyError:\n"
        "        return _careful(values)\n"
        "    record.__class__ = _cls\n"
        "    return record\n"
    )
    return _compiled(
        f"stored_builder.<{cls.__name__}>",
        source,
        {"_new": object.__new__, "_filler": filler, "_cls": cls, "_careful": careful},
    )
