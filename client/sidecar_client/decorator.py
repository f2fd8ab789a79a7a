"""``@cached``: values put on the Lambda context before the handler runs (lambda_cache's idea),
read through the daemon on every invocation (a cache hit: microseconds), so rotations show up
after the TTL without redeploying."""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

from sidecar_client.parameters import get_parameter, get_secret

Handler = TypeVar("Handler", bound=Callable[..., Any])


def _entry_name(name: str) -> str:
    return name.rstrip("/").rsplit("/", 1)[-1].replace("-", "_").replace(".", "_")


def cached(parameter: str | None = None, secret: str | None = None,
           max_age: int | None = None, decrypt: bool | None = None,
           transform: str | None = None,
           entry_name: str | None = None) -> Callable[[Handler], Handler]:
    """Put one parameter or secret on ``context.<entry_name>`` (default: the last part of the
    name, ``-`` and ``.`` as ``_``). Stack it for several."""
    if (parameter is None) == (secret is None):
        raise ValueError("give exactly one of parameter= and secret=")
    name = parameter if parameter is not None else secret
    assert name is not None
    attribute = entry_name or _entry_name(name)

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def wrapper(event: Any, context: Any, *args: Any, **kwargs: Any) -> Any:
            if parameter is not None:
                value = get_parameter(parameter, transform=transform, decrypt=decrypt,
                                      max_age=max_age)
            else:
                value = get_secret(name, transform=transform, max_age=max_age)
            setattr(context, attribute, value)
            return handler(event, context, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
