"""Local mode's GetParametersByPath: the file's parameters under a path, filtered and bounded
as ``ssm.get_parameters_by_path`` serves AWS's pages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sidecar.aws.shapes import dumps, render_shaped_parameter, shape_parameter
from sidecar.aws.ssm import MAX_PATH_BYTES, MAX_PATH_PAGES, PATH_PAGE
from sidecar.config.local_data import LocalData, Parameter, ParameterVersion
from sidecar.core.errors import ApiError
from sidecar.core.key import SSM, Key

Document = Callable[[Parameter, ParameterVersion, bool], dict[str, Any]]


def _selected(parameter: Parameter, prefix: str, options: dict[str, str]
              ) -> ParameterVersion | None:
    """The version of ``parameter`` this path read returns, if any (AWS's rules: the path is
    a prefix of whole levels; one level unless recursive; ``Equals`` filters)."""
    if not parameter.name.startswith(prefix):
        return None
    if options.get("recursive") != "true" and "/" in parameter.name[len(prefix):]:
        return None
    if "type" in options and parameter.type != options["type"]:
        return None
    if "keyId" in options and parameter.key_id != options["keyId"]:
        return None
    if "label" in options:
        return next((v for v in parameter.versions if options["label"] in v.labels), None)
    return parameter.versions[-1]


def path_answer(data: LocalData, key: Key, document: Document) -> tuple[bytes, dict[Key, bytes]]:
    """The path read's body (in name order) and each parameter's single-read body (none with a
    ``label`` filter, which may pick another version than a plain read); raises 400
    ``TooManyParameters`` past the bounds AWS's pages are read within."""
    options = dict(key.options)
    prefix = key.name.rstrip("/") + "/"
    parameters: list[dict[str, Any]] = []
    size = 0
    for parameter in sorted(data.parameters.values(), key=lambda found: found.name):
        version = _selected(parameter, prefix, options)
        if version is None:
            continue
        if len(parameters) == MAX_PATH_PAGES * PATH_PAGE:
            raise ApiError(400, "TooManyParameters", f"more than {MAX_PATH_PAGES} pages of "
                           f"{PATH_PAGE} parameters under this path; read a narrower path")
        shaped = shape_parameter(document(parameter, version, key.with_decryption))
        size += len(dumps(shaped))
        if size > MAX_PATH_BYTES:
            raise ApiError(400, "TooManyParameters", f"the parameters under this path are "
                           f"over {MAX_PATH_BYTES // 1024 // 1024} MB; read a narrower path")
        parameters.append(shaped)
    members: dict[Key, bytes] = {}
    if "label" not in options:
        for shaped in parameters:
            member = Key(SSM, str(shaped["Name"]), with_decryption=key.with_decryption,
                         role=key.role)
            members[member] = render_shaped_parameter(shaped)
    return dumps({"Parameters": parameters, "ResultMetadata": {}}), members
