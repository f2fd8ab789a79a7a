"""The Amazon Ion text reader AppConfig's multi-variant feature flags need (sidecar/core/ion.py):
the values, annotations, comments and long strings AWS's flag profiles use, and refusals."""

from __future__ import annotations

import pytest

from sidecar.core import ion


def test_ion_reader() -> None:
    values = ion.parse(r"""
        // a comment
        'a b'::"tab\there \u00e9" /* block */ x::y::'''one''' '''two'''
        (op $key 'sym' -7 2.5e1 0x1F true null.int [1, "2",] {k: 1, "q": [true]})
        2024-05-01T12:30:00Z 2024-05T 2024-05-01
    """)
    assert values[0] == ion.Annotated(("a b",), "tab\there é")
    assert values[1] == ion.Annotated(("x", "y"), "onetwo")
    sexp = values[2]
    assert isinstance(sexp, ion.SExp)
    assert list(sexp) == ["op", "$key", "sym", -7, 25.0, 31, True, None, [1, "2"],
                          {"k": 1, "q": [True]}]
    assert isinstance(sexp[1], ion.Symbol) and not isinstance("x", ion.Symbol)
    assert [value.isoformat() for value in values[3:]] == [
        "2024-05-01T12:30:00+00:00", "2024-05-01T00:00:00+00:00", "2024-05-01T00:00:00+00:00"]
    for broken in ('"open', "[1 2]", "{{AAAA}}", "(" * 100 + ")" * 100, "'x'::"):
        with pytest.raises(ion.IonError):
            ion.parse(broken)
