"""What the layer build (``build_layer.py``) and the binary build (``build_binary.py``) share:
names, the dependency list, botocore's kept services, the log line and the reproducible zip.

Both import this module and nothing of each other's (``build_layer`` calls ``build_binary``
for ``--binary``; ``build_binary`` never imports ``build_layer``).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NAME = "parameters-secrets-sidecar"
# The daemon's runtime dependencies, as pinned by constraints.txt (pyproject's dependencies).
REQUIREMENTS = ("aiohttp", "aiobotocore", "cachetools", "uvloop")
BOTOCORE_SERVICES = {"ssm", "secretsmanager", "sts", "s3", "appconfigdata"}  # + port 2772
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def log(message: str) -> None:
    print(f"build-layer: {message}", flush=True)


def write_zip(source: Path, destination: Path) -> int:
    """A reproducible zip: sorted entries, fixed timestamps, exec bits kept."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(destination, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in sorted(source.rglob("*")):
            if path.is_dir():
                continue
            info = zipfile.ZipInfo(str(path.relative_to(source)), ZIP_DATE)
            mode = 0o755 if os.access(path, os.X_OK) else 0o644
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes(), compresslevel=9)
    return destination.stat().st_size
