"""Listener settings beyond the loopback port (README, "Where it listens"): the Unix domain
socket, its mode and group, and the guarded extra address with its allow-list of client networks.

Standard library only: Lambda mode reads these before its register call. ``ipaddress`` and
``grp`` are imported only when a setting that needs them is set. Each check raises ``ValueError``
whose text is the "expected ..." part of the one line the caller shows; the caller names the
variable or the file's key.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing before the register call
if TYPE_CHECKING:
    from typing import Any

UNIX_SOCKET = "PARAMETERS_SECRETS_EXTENSION_UNIX_SOCKET"
UNIX_SOCKET_MODE = "PARAMETERS_SECRETS_EXTENSION_UNIX_SOCKET_MODE"
UNIX_SOCKET_GROUP = "PARAMETERS_SECRETS_EXTENSION_UNIX_SOCKET_GROUP"
BIND_ADDRESS = "PARAMETERS_SECRETS_EXTENSION_BIND_ADDRESS"
ALLOWED_CLIENTS = "PARAMETERS_SECRETS_EXTENSION_ALLOWED_CLIENTS"
DEFAULT_UNIX_SOCKET_MODE = 0o660
MAX_UNIX_PATH_BYTES = 107  # sockaddr_un.sun_path is 108 bytes on Linux, its final NUL included
MAX_GROUP_ID = 2**32 - 2  # (gid_t)-1 means "unchanged" to chown
ALWAYS_LISTENED = ("127.0.0.1", "::1")
# The variable each file key yields to (README, "Which wins").
FILE_KEYS = {"unix_socket": UNIX_SOCKET, "unix_socket_mode": UNIX_SOCKET_MODE,
             "unix_socket_group": UNIX_SOCKET_GROUP}


def unix_path(value: str) -> str:
    """An absolute socket path that fits ``sun_path``."""
    if not value.startswith("/") or value.endswith("/") or "\0" in value:
        raise ValueError("an absolute path to a socket file, such as /run/sidecar/sidecar.sock")
    if len(os.fsencode(value)) > MAX_UNIX_PATH_BYTES:
        raise ValueError(f"a path of at most {MAX_UNIX_PATH_BYTES} bytes (the kernel's limit "
                         "for a socket's path)")
    return value


def file_mode(value: str | int) -> int:
    """A file mode: octal digits (``0660``, ``660``, ``0o660``) or an integer already parsed
    (TOML's ``0o660``), from 0 to 0o777."""
    allowed = "an octal file mode from 0000 to 0777, such as 0660"
    if isinstance(value, bool):
        raise ValueError(allowed)
    if isinstance(value, int):
        mode = value
    else:
        text = value.strip().lower().removeprefix("0o")
        if not 1 <= len(text) <= 4 or any(c not in "01234567" for c in text):
            raise ValueError(allowed)
        mode = int(text, 8)
    if not 0 <= mode <= 0o777:
        raise ValueError(allowed)
    return mode


def group_id(value: str | int) -> int:
    """A group id: a number as given (a shared volume's group need not be named here), or a
    name looked up in the host's group database."""
    allowed = "a group name known to this host, or a numeric group id"
    if isinstance(value, bool):
        raise ValueError(allowed)
    if isinstance(value, int) or value.strip().isdigit():
        gid = int(value if isinstance(value, int) else value.strip())
        if not 0 <= gid <= MAX_GROUP_ID:
            raise ValueError(allowed)
        return gid
    import grp

    try:
        return grp.getgrnam(value.strip()).gr_gid
    except KeyError:
        raise ValueError(allowed + " (no such group)") from None


def bind_address(value: str) -> str:
    """One address of this host, in its canonical text form; never a wildcard (SPEC section 1:
    never all interfaces), never the loopback addresses listened on anyway."""
    import ipaddress

    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        raise ValueError("one IPv4 or IPv6 address of this host, such as 172.18.0.5 "
                         "(not a host name)") from None
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        # ::ffff:a.b.c.d is an IPv4 address in IPv6 spelling: a v6 socket cannot bind it.
        raise ValueError(f"the IPv4 address itself ({mapped}), not its IPv6-mapped form")
    if address.is_unspecified:
        raise ValueError("one address, not a wildcard: 0.0.0.0 and :: are every interface, "
                         "where this daemon never listens") from None
    if str(address) in ALWAYS_LISTENED:
        raise ValueError("an address other than 127.0.0.1 and ::1, which are always listened "
                         "on") from None
    return str(address)


def client_networks(value: str) -> tuple[str, ...]:
    """Comma-separated networks in CIDR form, host bits zero, none of them every address."""
    import ipaddress

    allowed = "comma-separated networks in CIDR form, such as 10.0.0.0/24,fd00::/64"
    items = [item.strip() for item in value.split(",") if item.strip()]
    if not items:
        raise ValueError(allowed)
    networks = []
    for item in items:
        try:
            network = ipaddress.ip_network(item, strict=True)
        except ValueError:
            raise ValueError(f"{allowed} ({item[:64]!r} is not one; host bits must be "
                             "zero)") from None
        if network.prefixlen == 0:
            raise ValueError(f"{allowed} ({item!r} is every address: no allow-list at "
                             "all)") from None
        networks.append(str(network))
    return tuple(dict.fromkeys(networks))


def load(env: Mapping[str, str], from_file: Mapping[str, object],
         warnings: list[str]) -> dict[str, Any]:
    """The listener fields of ``Settings`` from the environment over the file's keys.

    Raises ``ValueError`` with the whole line (the variable or key, the value, what is
    allowed); cross-setting rules that need the token are the caller's. Settings that do
    nothing without another one add a line to ``warnings``.
    """
    def given(variable: str, key: str) -> tuple[str, object] | None:
        raw = env.get(variable, "").strip()
        if raw:
            return variable, raw
        if key in from_file:
            return key, from_file[key]
        return None

    def checked(found: tuple[str, object], check: Callable[[Any], object]) -> object:
        name, raw = found
        try:
            return check(raw)
        except (ValueError, TypeError) as exc:
            shown = raw if isinstance(raw, str) else repr(raw)
            raise ValueError(f"{name}={str(shown)[:200]!r} is invalid: expected {exc}") from None

    out: dict[str, Any] = {}
    socket_given = given(UNIX_SOCKET, "unix_socket")
    mode_given = given(UNIX_SOCKET_MODE, "unix_socket_mode")
    group_given = given(UNIX_SOCKET_GROUP, "unix_socket_group")
    if socket_given is not None:
        out["unix_socket"] = checked(socket_given, unix_path)
    if mode_given is not None:
        out["unix_socket_mode"] = checked(mode_given, file_mode)
    if group_given is not None:
        out["unix_socket_group"] = checked(group_given, group_id)
    if socket_given is None and (mode_given or group_given):
        warnings.append(f"{UNIX_SOCKET_MODE} and {UNIX_SOCKET_GROUP} do nothing without "
                        f"{UNIX_SOCKET}")
    address = env.get(BIND_ADDRESS, "").strip()
    clients = env.get(ALLOWED_CLIENTS, "").strip()
    if address:
        out["bind_address"] = checked((BIND_ADDRESS, address), bind_address)
    if clients:
        out["allowed_clients"] = checked((ALLOWED_CLIENTS, clients), client_networks)
    if address and not clients:
        raise ValueError(f"{BIND_ADDRESS}={address!r} needs {ALLOWED_CLIENTS}: the client "
                         "networks (CIDRs) that may connect beyond loopback")
    if clients and not address:
        warnings.append(f"{ALLOWED_CLIENTS} does nothing without {BIND_ADDRESS} (loopback and "
                        "Unix socket clients are always served)")
    return out
