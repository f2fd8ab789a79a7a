"""The framework floor: a bare aiohttp app returning a fixed body, nothing else.

Usage: python scripts/floor_app.py PORT BODY_BYTES [--asyncio]
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web


def main() -> None:
    port, size = int(sys.argv[1]), int(sys.argv[2])
    body = b'{"v":"' + b"x" * max(0, size - 8) + b'"}'
    response_headers = {"Content-Type": "application/json"}

    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=body, headers=response_headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    if "--asyncio" not in sys.argv:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
