"""The listening sockets (README, "Where it listens"). Standard library only: Lambda mode binds
them before the register call, before aiohttp is even imported.

- ``127.0.0.1`` and, where the host has IPv6 loopback, ``[::1]``, on the one port (SPEC
  section 1); never all interfaces.
- Opt-in: a Unix domain socket, replaced safely when a stale one is found, removed at exit.
- Opt-in: one more address, whose clients ``http.clients`` checks against the allow-list.

Every failure is a ``ListenError`` whose text is the one line shown.
"""

from __future__ import annotations

import errno
import os
import socket
import stat

from sidecar.config.listen import BIND_ADDRESS, UNIX_SOCKET
from sidecar.config.settings import Settings

BACKLOG = 1024
PORT_VARIABLE = "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT"
# How long a socket found at the path may take to accept a probe before it is judged in use.
PROBE_SECS = 0.5
# Binding ::1 fails with these where the host has no IPv6 loopback (IPv6 off in the kernel, or
# ::1 not on lo): the daemon starts on 127.0.0.1 alone.
NO_IPV6 = (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT)
CREATE_UMASK = 0o177  # the socket file is born 0600, then given its mode and group


class ListenError(Exception):
    """A listener could not be opened; ``str(error)`` is the one line shown."""


class Listeners:
    """The bound, listening sockets, what to call them in the log, and DEBUG notes."""

    def __init__(self) -> None:
        self.sockets: list[socket.socket] = []
        self.addresses: list[str] = []
        self.notes: list[str] = []  # logged at DEBUG once logging is set up
        self.beyond_loopback: str | None = None
        self._unix: tuple[str, int, int] | None = None  # path, st_dev, st_ino of our file
        # The AppConfig agent's port (README, "AppConfig"): its sockets, or why there are none.
        self.appconfig: list[socket.socket] = []
        self.appconfig_problem: str | None = None

    def add(self, sock: socket.socket, address: str) -> None:
        sock.setblocking(False)
        self.sockets.append(sock)
        self.addresses.append(address)

    def describe(self) -> str:
        return ",".join(self.addresses)

    def close(self) -> None:
        """Close every socket and remove the Unix socket's file if it is still ours (same
        device and inode: a newer daemon's socket at the same path is left alone). Idempotent."""
        for sock in self.sockets + self.appconfig:
            sock.close()
        if self._unix is not None:
            path, device, inode = self._unix
            self._unix = None
            try:
                found = os.lstat(path)
                if (found.st_dev, found.st_ino) == (device, inode):
                    os.unlink(path)
            except OSError:
                pass  # already gone, or never ours to remove


def bind(settings: Settings) -> Listeners:
    """Every listener ``settings`` ask for, bound and listening; raises ``ListenError``."""
    listeners = Listeners()
    try:
        port = settings.port
        listeners.add(_tcp("127.0.0.1", port, PORT_VARIABLE), f"127.0.0.1:{port}")
        v6 = _loopback_v6(port, listeners.notes)
        if v6 is not None:
            listeners.add(v6, f"[::1]:{port}")
        if settings.bind_address:
            address = _shown(settings.bind_address, port)
            listeners.add(_tcp(settings.bind_address, port, BIND_ADDRESS), address)
            listeners.beyond_loopback = address
        if settings.unix_socket:
            sock, identity = _unix(settings.unix_socket, settings.unix_socket_mode,
                                   settings.unix_socket_group)
            listeners._unix = (settings.unix_socket, *identity)
            listeners.add(sock, f"unix:{settings.unix_socket}")
        if settings.appconfig.wanted:
            _appconfig(settings.appconfig.port, settings.appconfig.required, listeners)
    except BaseException:
        listeners.close()
        raise
    return listeners


def _shown(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _tcp(host: str, port: int, variable: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=BACKLOG)
    except OSError as exc:
        raise ListenError(f"cannot listen on {_shown(host, port)} ({variable}): "
                          f"{_reason(exc)}") from None


def _loopback_v6(port: int, notes: list[str]) -> socket.socket | None:
    """``[::1]:port``, or None (with a note) where the host has no IPv6 loopback. Any other
    failure (the port taken on ::1) stops the start: a client resolving ``localhost`` to ::1
    would reach whatever holds it."""
    if not socket.has_ipv6:
        notes.append("no IPv6 loopback (Python built without IPv6): listening on 127.0.0.1 only")
        return None
    try:
        # IPV6_V6ONLY (create_server sets it): ::1 only, never IPv4-mapped addresses.
        return socket.create_server(("::1", port), family=socket.AF_INET6, backlog=BACKLOG)
    except OSError as exc:
        if exc.errno in NO_IPV6:
            notes.append(f"no IPv6 loopback ({_reason(exc)}): listening on 127.0.0.1 only")
            return None
        raise ListenError(f"cannot listen on [::1]:{port} ({PORT_VARIABLE}): "
                          f"{_reason(exc)}") from None


def _appconfig(port: int, required: bool, listeners: Listeners) -> None:
    """The AppConfig port on 127.0.0.1 (and ::1 where it can be had). Taken: a ``ListenError``
    where it was asked for, else the reason kept for one WARN line (Lambda's default: another
    extension may hold it)."""
    variable = "AWS_APPCONFIG_EXTENSION_HTTP_PORT"
    try:
        listeners.appconfig.append(_tcp("127.0.0.1", port, variable))
    except ListenError as exc:
        if required:
            raise
        listeners.appconfig_problem = str(exc)
        return
    if socket.has_ipv6:
        try:
            listeners.appconfig.append(socket.create_server(
                ("::1", port), family=socket.AF_INET6, backlog=BACKLOG))
        except OSError as exc:
            listeners.notes.append(f"AppConfig port on 127.0.0.1 only ({_reason(exc)})")
    for sock in listeners.appconfig:
        sock.setblocking(False)


def _reason(exc: OSError) -> str:
    return os.strerror(exc.errno) if exc.errno else str(exc)


def _unsafe_ancestor(directory: str) -> str | None:
    """The first directory on the way to ``directory`` (as written, and with every symlink
    resolved) that anyone may write to without the sticky bit: there another user could
    rename a directory below and put their own socket in its place (as ssh's StrictModes
    checks every directory up to the root)."""
    for start in (os.path.abspath(directory), os.path.realpath(directory)):
        current = start
        while True:
            try:
                info = os.stat(current)
            except OSError:
                info = None
            if info is not None and info.st_mode & stat.S_IWOTH \
                    and not info.st_mode & stat.S_ISVTX:
                return current
            parent = os.path.dirname(current)
            if parent == current:
                break
            current = parent
    return None


def _unix(path: str, mode: int, group: int | None) -> tuple[socket.socket, tuple[int, int]]:
    """A listening Unix socket at ``path`` with ``mode`` and ``group``; the file's device and
    inode, to know it as ours at exit."""
    where = f"the Unix socket {path!r} ({UNIX_SOCKET})"
    directory = os.path.dirname(path) or "/"
    try:
        info = os.stat(directory)
    except OSError as exc:
        raise ListenError(f"cannot use {where}: its directory {directory!r}: "
                          f"{_reason(exc)}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise ListenError(f"cannot use {where}: {directory!r} is not a directory")
    unsafe = _unsafe_ancestor(directory)
    if unsafe is not None:
        raise ListenError(f"refusing {where}: {unsafe!r} is writable by everyone without the "
                          "sticky bit, so any user could replace the socket or a directory "
                          "on its way; use a directory only the daemon's user (and group) "
                          "may write to")
    _clear(path, where)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous = os.umask(CREATE_UMASK)  # process-wide, for this bind only (start-up)
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {where}: {_reason(exc)}") from None
    finally:
        os.umask(previous)
    try:
        created = os.lstat(path)
        if group is not None:
            try:
                os.chown(path, -1, group, follow_symlinks=False)
            except PermissionError:
                raise ListenError(f"cannot give {where} to group {group}: the daemon's user "
                                  "is not a member of it") from None
        # No lchmod on Linux; the directory check above keeps others from swapping the path.
        os.chmod(path, mode)
        sock.listen(BACKLOG)  # only now: no client connects before the mode and group are set
    except BaseException as exc:
        sock.close()
        _remove(path)
        if isinstance(exc, OSError):
            raise ListenError(f"cannot listen on {where}: {_reason(exc)}") from None
        raise
    return sock, (created.st_dev, created.st_ino)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        return  # already gone


def _clear(path: str, where: str) -> None:
    """Make room at ``path``: nothing there, or a stale socket (nobody answers) removed.
    Never follows or removes a symbolic link, never removes anything but a socket, and never
    a socket another process answers on."""
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ListenError(f"cannot use {where}: {_reason(exc)}") from None
    if stat.S_ISLNK(found.st_mode):
        raise ListenError(f"refusing {where}: it is a symbolic link (never followed or "
                          "replaced); remove it or choose another path")
    if not stat.S_ISSOCK(found.st_mode):
        raise ListenError(f"refusing {where}: something that is not a socket is there; remove "
                          "it or choose another path")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(PROBE_SECS)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        pass  # stale: left by a daemon that did not remove it (killed)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ListenError(f"refusing {where}: cannot tell whether the socket there is in use "
                          f"({_reason(exc)})") from None
    else:
        raise ListenError(f"refusing {where}: another process answers on it (is another "
                          "daemon running?)")
    finally:
        probe.close()
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ListenError(f"cannot replace the stale socket at {where}: "
                          f"{_reason(exc)}") from None
