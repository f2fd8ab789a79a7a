"""The allow-list of client networks for the listener beyond loopback (README, "Where it
listens"; SPEC section 1: a non-loopback address only with a token *and* an allow-list).

Only connections that arrived on the extra address are judged: the loopback listeners and the
Unix socket serve this host's own processes. There, ``127.0.0.1`` and ``::1`` are always
allowed, and an IPv4-mapped IPv6 peer is judged as its IPv4 address. Verdicts are remembered
per peer address (bounded), so a keep-alive client costs one dictionary lookup a request.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence

ALWAYS_ALLOWED = ("127.0.0.1", "::1")
MEMO_ENTRIES = 4096

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(text: str) -> Address:
    address = ipaddress.ip_address(text.split("%", 1)[0])  # a link-local peer's scope aside
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class ClientGuard:
    """Says whether a connection's client may be served. ``bind_address`` is the extra
    listener's address and ``networks`` the allow-list, both as ``config.listen`` checked
    them (canonical text, CIDR networks)."""

    def __init__(self, bind_address: str, networks: Sequence[str]) -> None:
        self._guarded = _address(bind_address)
        self._networks = [ipaddress.ip_network(network) for network in networks]
        self._local: dict[str, bool] = {}  # listener address text -> is it the guarded one
        self._peers: dict[str, bool] = {}  # client address text -> allowed

    def admits(self, transport: asyncio.BaseTransport | None) -> bool:
        """True unless the connection came in on the guarded address from a client outside
        the allow-list. A closed connection (no transport) is not served."""
        if transport is None:
            return False
        local = transport.get_extra_info("sockname")
        if not isinstance(local, tuple):
            return True  # the Unix socket
        guarded = self._local.get(local[0])
        if guarded is None:
            guarded = self._remember(self._local, local[0], _address(local[0]) == self._guarded)
        if not guarded:
            return True
        peer = transport.get_extra_info("peername")
        if not isinstance(peer, tuple):
            return False
        allowed = self._peers.get(peer[0])
        if allowed is None:
            allowed = self._remember(self._peers, peer[0], self._allows(_address(peer[0])))
        return allowed

    def _allows(self, address: Address) -> bool:
        if str(address) in ALWAYS_ALLOWED:
            return True
        return any(address in network for network in self._networks
                   if network.version == address.version)

    @staticmethod
    def _remember(memo: dict[str, bool], key: str, verdict: bool) -> bool:
        if len(memo) >= MEMO_ENTRIES:
            memo.clear()
        memo[key] = verdict
        return verdict


def client_text(transport: asyncio.BaseTransport | None) -> str:
    """The client's address for an error message (an address is not a secret)."""
    peer = transport.get_extra_info("peername") if transport is not None else None
    return str(peer[0]) if isinstance(peer, tuple) else "unknown"
