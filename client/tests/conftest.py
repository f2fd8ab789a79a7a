"""The project's fixtures (moto in server mode, the fault proxy, the real daemon)."""

from tests.conftest import *  # noqa: F403
