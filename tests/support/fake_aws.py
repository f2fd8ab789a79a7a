"""The benchmarks' fast fake AWS (``scripts/benchlib.py``) over HTTPS, with its CA bundle
(``scripts/coldstart_sandbox.py``); the tests reach them here (scripts never import the tests)."""

from __future__ import annotations

import sys

from tests.support.process import REPO

sys.path.insert(0, str(REPO / "scripts"))

from benchlib import FakeAwsThread
from coldstart_sandbox import make_tls

__all__ = ["FakeAwsThread", "make_tls"]
