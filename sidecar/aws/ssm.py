"""Systems Manager Parameter Store: GetParameter, GetParameters (batches of 10) and
GetParametersByPath (every page, bounded), each answer rendered to the body served."""

from __future__ import annotations

from typing import Any

from sidecar.aws.clients import Clients
from sidecar.aws.errors import translate
from sidecar.aws.identity import parameter_identity, selector_matches
from sidecar.aws.regions import region_of
from sidecar.aws.shapes import (
    BatchAnswer,
    dumps,
    render_parameter,
    render_shaped_parameter,
    shape_parameter,
)
from sidecar.core.errors import ApiError
from sidecar.core.key import SSM, Key

BATCH = 10  # GetParameters takes at most 10 names
PATH_PAGE = 10  # GetParametersByPath returns at most 10 a page
MAX_PATH_PAGES = 100
MAX_PATH_BYTES = 4 * 1024 * 1024


async def get_parameter(clients: Clients, key: Key) -> bytes:
    """One parameter's body; raises ``ApiError`` (``item``: AWS's word on this name)."""
    try:
        response = await clients.call(SSM, "get_parameter", key.describe(), key.role,
                                      region_of(key.name, clients.home_region),
                                      Name=key.ssm_name(), WithDecryption=key.with_decryption)
    except Exception as exc:
        raise translate(exc) from None
    return render_parameter(response["Parameter"])


async def get_parameters(clients: Clients, keys: list[Key]) -> BatchAnswer:
    """GetParameters for up to 10 keys sharing ``with_decryption`` and role, with distinct
    identities (see ``identity.batches``): each answer is matched to its key by name or ARN and
    by the ``Selector`` where AWS echoes it. A name AWS lists in ``InvalidParameters`` is not
    found; one neither answered nor listed is left out (the caller fetches it alone)."""
    wanted = {parameter_identity(key.name): key for key in keys}
    try:
        response = await clients.call(
            SSM, "get_parameters", f"{len(keys)} names", keys[0].role,
            region_of(keys[0].name, clients.home_region),
            Names=[key.ssm_name() for key in keys], WithDecryption=keys[0].with_decryption)
    except Exception as exc:
        raise translate(exc) from None
    found: dict[Key, bytes] = {}
    for parameter in response.get("Parameters", []):
        key = wanted.get(parameter_identity(str(parameter.get("Name", ""))))
        if key is not None and selector_matches(key, parameter):
            found[key] = render_parameter(parameter)
    invalid = set(response.get("InvalidParameters", []))
    errors = {key: ApiError(400, "ParameterNotFound",
                            f"parameter {key.ssm_name()[:256]!r} not found", item=True)
              for key in keys if key not in found and key.ssm_name() in invalid}
    return found, errors


async def get_parameters_by_path(clients: Clients, key: Key) -> tuple[bytes, dict[Key, bytes]]:
    """Every page of GetParametersByPath (bounded), and the single-read body of each
    parameter (none with a Label filter, which may pick another version than a plain read)."""
    options = dict(key.options)
    kwargs: dict[str, Any] = {"Path": key.name, "Recursive": options["recursive"] == "true",
                              "WithDecryption": key.with_decryption, "MaxResults": PATH_PAGE}
    filters = [{"Key": name, "Option": "Equals", "Values": [options[field]]}
               for field, name in (("type", "Type"), ("keyId", "KeyId"), ("label", "Label"))
               if field in options]
    if filters:
        kwargs["ParameterFilters"] = filters
    parameters: list[dict[str, Any]] = []
    size = 0
    try:
        for _page in range(MAX_PATH_PAGES):
            response = await clients.call(SSM, "get_parameters_by_path", key.describe(),
                                          key.role, **kwargs)
            for parameter in response.get("Parameters", []):
                shaped = shape_parameter(parameter)
                size += len(dumps(shaped))
                parameters.append(shaped)
            if size > MAX_PATH_BYTES:
                raise ApiError(400, "TooManyParameters", f"the parameters under this path are "
                               f"over {MAX_PATH_BYTES // 1024 // 1024} MB; read a narrower path")
            token = response.get("NextToken")
            if not token:
                break
            kwargs["NextToken"] = token
        else:
            raise ApiError(400, "TooManyParameters", f"more than {MAX_PATH_PAGES} pages of "
                           f"{PATH_PAGE} parameters under this path; read a narrower path")
    except Exception as exc:
        raise translate(exc) from None
    members: dict[Key, bytes] = {}
    if "label" not in options:
        for shaped in parameters:
            member = Key(SSM, str(shaped.get("Name")), with_decryption=key.with_decryption,
                         role=key.role)
            members[member] = render_shaped_parameter(shaped)
    return dumps({"Parameters": parameters, "ResultMetadata": {}}), members
