"""The fake AppConfig Data service lives in ``scripts/`` (the benchmarks use it too, and
scripts never import the tests); the tests reach it here."""

from __future__ import annotations

import sys

from tests.support.process import REPO

sys.path.insert(0, str(REPO / "scripts"))

from fake_appconfig import LATEST_PATH, SESSION_PATH, AppConfigFake

__all__ = ["LATEST_PATH", "SESSION_PATH", "AppConfigFake"]
