"""The path to the register call stays light (issue 22): what it imports is added to every
function's INIT, so a heavy import sneaking onto it is a regression. And ``Record``, which keeps
``typing`` off that path, makes what ``typing.NamedTuple`` makes."""

from __future__ import annotations

import pickle
import subprocess
import sys
import typing

import pytest

from sidecar.core.record import Record
from tests.support.process import REPO

pytestmark = pytest.mark.timeout(60)

# Modules that cost milliseconds each and that nothing before register needs.
HEAVY = ("typing", "re", "json", "asyncio", "aiohttp", "botocore", "aiobotocore", "ssl",
         "argparse", "logging", "dataclasses", "pathlib", "tomllib", "ipaddress", "urllib")


def test_the_register_path_imports_nothing_heavy() -> None:
    """Everything Lambda mode imports before its register call (``__main__`` and ``lifecycle``
    with what they import), in a fresh interpreter without ``site`` (as the layer runs it)."""
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); "
             "import sidecar.__main__, sidecar.extension.lifecycle; "
             "print(' '.join(sorted(sys.modules)))")
    loaded = subprocess.run([sys.executable, "-S", "-c", probe, str(REPO)], capture_output=True,
                            text=True, timeout=30, check=True).stdout.split()
    assert "sidecar.extension.lifecycle" in loaded
    heavy = [name for name in loaded if name.split(".")[0] in HEAVY]
    assert heavy == [], f"imported before the register call: {heavy}"


class Typed(typing.NamedTuple):
    """A record."""

    name: str
    size: int = 3
    tags: tuple[str, ...] = ()

    def twice(self) -> int:
        return self.size * 2

    @property
    def label(self) -> str:
        return f"{self.name}:{self.size}"


class Ours(Record):
    """A record."""

    name: str
    size: int = 3
    tags: tuple[str, ...] = ()

    def twice(self) -> int:
        return self.size * 2

    @property
    def label(self) -> str:
        return f"{self.name}:{self.size}"


def test_a_record_is_what_typing_namedtuple_makes() -> None:
    ours, typed = Ours("a"), Typed("a")
    assert Ours._fields == Typed._fields == ("name", "size", "tags")
    assert Ours._field_defaults == Typed._field_defaults == {"size": 3, "tags": ()}
    assert tuple(ours) == tuple(typed) == ("a", 3, ())
    assert tuple.__eq__(ours, typed) and hash(ours) == hash(typed)
    assert repr(ours) == "Ours(name='a', size=3, tags=())"
    assert ours._replace(size=5).twice() == 10 and ours.label == typed.label == "a:3"
    assert ours._asdict() == typed._asdict()
    assert Ours.__doc__ == "A record." and Ours.__module__ == __name__
    assert Ours.__qualname__ == "Ours"
    assert list(Ours.__annotations__) == ["name", "size", "tags"]
    assert isinstance(ours, tuple) and not hasattr(ours, "__dict__")  # a plain tuple's size
    assert pickle.loads(pickle.dumps(ours)) == ours
    with pytest.raises(AttributeError):
        ours.name = "b"  # type: ignore[misc]
    with pytest.raises(TypeError):
        Ours()  # type: ignore[call-arg]


def test_a_record_field_without_a_default_after_one_with_is_refused() -> None:
    with pytest.raises(TypeError, match="without a default follows"):
        class Bad(Record):
            first: int = 1
            second: int  # type: ignore[misc]


def test_a_record_refuses_what_typing_namedtuple_refuses() -> None:
    with pytest.raises(TypeError):
        class Mixed(Record, int):  # type: ignore[misc]
            first: int
    with pytest.raises(AttributeError, match="_replace"):
        class Overwriting(Record):
            first: int

            def _replace(self, **changes: object) -> None:  # type: ignore[misc]
                pass


def test_a_record_keeps_what_the_class_statement_gives() -> None:
    """Descriptors learn their name (``__set_name__``); Python 3.13's ``__firstlineno__`` lets
    ``inspect`` find the source, as for ``typing.NamedTuple``."""

    class Named:
        def __set_name__(self, owner: type, name: str) -> None:
            self.name = name

    class WithDescriptor(Record):
        first: int
        described = Named()  # type: ignore[misc]

    assert WithDescriptor.described.name == "described"
    import inspect

    assert "class Ours(Record)" in inspect.getsource(Ours)
