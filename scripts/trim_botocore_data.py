"""Write the trimmed botocore data the daemon loads instead of botocore's full files.

botocore parses the whole service model and the whole legacy endpoints file when a client is
created: for SSM's 152 operations and every service's endpoints that is about 12 MB of resident
memory, for the 4 operations the daemon calls. This keeps only those operations (and the shapes
they reach) and the endpoint entries of the services used, in ``sidecar/aws/botocore_data/``, which
the daemon puts first on botocore's data search path. Re-run after upgrading botocore; a test
fails when the committed files no longer match what this script would write.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import botocore.loaders

REPO = Path(__file__).resolve().parents[1]
TARGET = REPO / "sidecar" / "aws" / "botocore_data"
OPERATIONS = {
    "ssm": ["GetParameter", "GetParameters", "GetParametersByPath"],
    "secretsmanager": ["GetSecretValue", "BatchGetSecretValue", "ListSecrets"],
    "s3": ["GetObject"],
    "sts": ["GetCallerIdentity", "AssumeRole"],  # validate_credentials, roleArn
    "appconfigdata": ["StartConfigurationSession", "GetLatestConfiguration"],  # port 2772
}
ENDPOINT_SERVICES = {"ssm", "secretsmanager", "sts", "s3", "appconfigdata"}


def reachable_shapes(model: dict[str, Any], operations: list[str]) -> set[str]:
    shapes = model["shapes"]
    pending: list[str] = []
    for name in operations:
        operation = model["operations"][name]
        pending += [operation[part]["shape"] for part in ("input", "output") if part in operation]
        pending += [error["shape"] for error in operation.get("errors", [])]
    seen: set[str] = set()
    while pending:
        shape = pending.pop()
        if shape in seen:
            continue
        seen.add(shape)
        definition = shapes[shape]
        pending += [member["shape"] for member in definition.get("members", {}).values()]
        pending += [definition[part]["shape"] for part in ("member", "key", "value")
                    if part in definition]
    return seen


def trimmed_files() -> dict[Path, str]:
    """Relative path -> file text, for every file this script owns."""
    loader = botocore.loaders.Loader()
    files: dict[Path, str] = {}
    for service, operations in OPERATIONS.items():
        version = loader.determine_latest_version(service, "service-2")
        model = loader.load_service_model(service, "service-2", version)
        keep = reachable_shapes(model, operations)
        trimmed = {key: value for key, value in model.items()
                   if key not in ("operations", "shapes")}
        trimmed["operations"] = {name: model["operations"][name] for name in operations}
        trimmed["shapes"] = {name: model["shapes"][name] for name in sorted(keep)}
        files[Path(service) / version / "service-2.json"] = json.dumps(trimmed, sort_keys=True)
    endpoints = loader.load_data("endpoints")
    for partition in endpoints["partitions"]:
        partition["services"] = {name: value for name, value in partition["services"].items()
                                 if name in ENDPOINT_SERVICES}
    files[Path("endpoints.json")] = json.dumps(endpoints, sort_keys=True)
    return files


def main() -> int:
    for relative, text in trimmed_files().items():
        path = TARGET / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")
        print(f"trim-botocore-data: {path.relative_to(REPO)} ({len(text) // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
