"""Entry point of the self-contained binary (PyInstaller): the daemon, as ``python -m sidecar``."""

import sys

from sidecar.__main__ import main

sys.exit(main())
