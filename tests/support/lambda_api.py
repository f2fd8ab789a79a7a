"""The fake Lambda Extensions API lives in ``scripts/`` (the benchmarks use it too, and scripts
never import the tests); the tests reach it here."""

from __future__ import annotations

import sys

from tests.support.process import REPO

sys.path.insert(0, str(REPO / "scripts"))

from fake_extensions_api import FakeExtensionsApi

__all__ = ["FakeExtensionsApi"]
