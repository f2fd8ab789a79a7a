"""``Record``: ``typing.NamedTuple`` without importing ``typing`` at run time.

Lambda mode loads the configuration before its register call, and every millisecond there is
added to the function's INIT (README, Cold start): ``typing`` and what it brings with it
(``re``, ``contextlib``, ``warnings``) cost about 8 ms of that path. Type checkers see
``typing.NamedTuple`` itself. At run time a class deriving from ``Record`` becomes what
``typing.NamedTuple`` makes of the same body: a ``collections.namedtuple`` whose fields are the
class's annotations in order, whose defaults are their values, with the class's methods and
other attributes set on it.

Standard library only.
"""

from __future__ import annotations

import collections

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy reads it as true)
if TYPE_CHECKING:
    from typing import NamedTuple as Record
else:
    # What namedtuple() and the class statement set themselves: never copied over.
    _OWN = frozenset(("__annotations__", "__annotate__", "__annotate_func__",
                      "__annotations_cache__", "__module__", "__qualname__", "__dict__",
                      "__weakref__", "__classdictcell__"))
    # What a class body may not redefine (typing.NamedTuple refuses the same names).
    _PROHIBITED = frozenset(("__new__", "__init__", "__slots__", "__getnewargs__", "_fields",
                             "_field_defaults", "_make", "_replace", "_asdict", "_source"))

    def _annotations(namespace: dict[str, object]) -> dict[str, object]:
        if "__annotations__" in namespace:
            return dict(namespace["__annotations__"])  # type: ignore[call-overload]
        annotate = namespace.get("__annotate__")  # Python 3.14: annotations made on demand
        return dict(annotate(1)) if callable(annotate) else {}

    class _RecordType(type):
        def __new__(cls, name: str, bases: tuple[type, ...],
                    namespace: dict[str, object]) -> type:
            if not bases:  # Record itself
                return super().__new__(cls, name, bases, namespace)
            if len(bases) > 1:
                raise TypeError(f"{name}: a Record derives from Record alone")
            fields = list(_annotations(namespace))
            defaults = [namespace[field] for field in fields if field in namespace]
            if any(field in namespace for field in fields[:len(fields) - len(defaults)]):
                raise TypeError(f"{name}: a field without a default follows one with a default")
            made = collections.namedtuple(name, fields, defaults=defaults,
                                          module=str(namespace["__module__"]))
            for key, value in namespace.items():
                if key in _PROHIBITED:
                    raise AttributeError(f"{name}: cannot overwrite the record's {key}")
                if key not in _OWN and key not in fields:
                    setattr(made, key, value)
                    set_name = getattr(type(value), "__set_name__", None)
                    if set_name is not None:  # as a class statement does for descriptors
                        set_name(value, made, key)
            made.__qualname__ = str(namespace["__qualname__"])
            made.__annotations__ = _annotations(namespace)
            return made

    class Record(metaclass=_RecordType):
        """Derive from it as from ``typing.NamedTuple``."""

__all__ = ["Record"]
