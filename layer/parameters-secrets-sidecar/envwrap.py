"""The Python layer's exec wrapper (``exec-wrapper`` runs it with ``python3 -I -S``): resolve
the references in the environment, then exec the runtime's command given as arguments.

Only the layer's ``common`` tree goes on ``sys.path`` (the wrapper is standard library only, so
no ``cpXY`` tree is needed, whatever this Python's version), never the function's own paths.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "common"))

from sidecar.envref.wrapper import main  # noqa: E402  (the path above must come first)

sys.exit(main(sys.argv[1:]))
