"""The trimmed botocore data shipped in the package matches the installed botocore."""

from __future__ import annotations

import sys

from sidecar.aws.upstream import TRIMMED_DATA
from tests.support.process import REPO

sys.path.insert(0, str(REPO / "scripts"))
from trim_botocore_data import trimmed_files


def test_committed_trimmed_data_is_current() -> None:
    expected = trimmed_files()
    for relative, text in expected.items():
        path = TRIMMED_DATA / relative
        assert path.exists(), f"missing {relative}: run scripts/trim_botocore_data.py"
        assert path.read_text(encoding="utf-8") == text + "\n", (
            f"{relative} is out of date with botocore: run scripts/trim_botocore_data.py")
    shipped = {p.relative_to(TRIMMED_DATA) for p in TRIMMED_DATA.rglob("*.json")}
    assert shipped == set(expected)
