"""The gateway seen from outside, as a customer's browser or app sees it.

Only the endpoints that need no state on our side: `/readyz` and `/healthz` answer
anyone, and `/control-ui-config.json` tells whether a password is required and
whether a given one is accepted (FIELD-NOTES.md). Every check is a yes or no: a
refused connection, a timeout or a garbled answer is a no, and the caller's policy
(start grace, retries) decides what a no means.
"""

from __future__ import annotations

import aiohttp

CHECK_TIMEOUT_S = 5.0


def _url(ip: str, port: int, path: str) -> str:
    return f"http://{ip}:{port}{path}"


async def _status(
    session: aiohttp.ClientSession,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    timeout_s: float = CHECK_TIMEOUT_S,
) -> int | None:
    try:
        async with session.get(
            url,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            allow_redirects=False,
        ) as response:
            await response.read()
            return response.status
    except (aiohttp.ClientError, TimeoutError, OSError):
        return None


async def ready(
    session: aiohttp.ClientSession, ip: str, port: int, *, timeout_s: float = CHECK_TIMEOUT_S
) -> bool:
    return await _status(session, _url(ip, port, "/readyz"), timeout_s=timeout_s) == 200


async def healthy(
    session: aiohttp.ClientSession, ip: str, port: int, *, timeout_s: float = CHECK_TIMEOUT_S
) -> bool:
    return await _status(session, _url(ip, port, "/healthz"), timeout_s=timeout_s) == 200


async def password_accepted(
    session: aiohttp.ClientSession,
    ip: str,
    port: int,
    password: str,
    *,
    timeout_s: float = CHECK_TIMEOUT_S,
) -> bool:
    status = await _status(
        session,
        _url(ip, port, "/control-ui-config.json"),
        headers={"Authorization": f"Bearer {password}"},
        timeout_s=timeout_s,
    )
    return status == 200


async def password_required(
    session: aiohttp.ClientSession, ip: str, port: int, *, timeout_s: float = CHECK_TIMEOUT_S
) -> bool:
    """True only on an explicit 401: an open gateway (200) or a dead one is not safe."""
    url = _url(ip, port, "/control-ui-config.json")
    return await _status(session, url, timeout_s=timeout_s) == 401
