"""Layer entry point: put this Python's compiled dependencies and the shared ones on sys.path.

The layer holds one tree of compiled packages per CPython minor version (``cp311``, ``cp312``,
...) and one ``common`` tree of pure-Python packages and the daemon itself.
"""

import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
compiled = os.path.join(here, tag)
if not os.path.isdir(compiled):
    built = sorted(entry for entry in os.listdir(here) if entry.startswith("cp"))
    print(f"[parameters-secrets-sidecar] ERROR this layer has no build for Python "
          f"{sys.version_info[0]}.{sys.version_info[1]} (built for: {', '.join(built)})",
          flush=True)
    sys.exit(1)
sys.path[:0] = [compiled, os.path.join(here, "common")]

from sidecar.__main__ import main  # noqa: E402  (the path above must come first)

sys.exit(main(sys.argv[1:]))  # the launcher's arguments (none in Lambda)
