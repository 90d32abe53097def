"""A fleet of bare gateways on loopback: one listener per address, each answering
`GET /healthz` the way an OpenClaw gateway does, or not at all.

The full customer-server simulator (`sim/vps.py`) is too heavy for thousands of
servers; the health monitor only needs the gateway's health port, so this serves
that alone, at many addresses, and counts what the monitor does to it: requests in
flight at once (the monitor's concurrency bound, seen from outside) and requests
per address. A gateway is `up`, `dead` (connection refused) or `hung` (accepts and
never answers, which only the monitor's timeout can end).
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections import Counter
from typing import Literal

State = Literal["up", "dead", "hung"]

_OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n" + (
    b"Connection: close\r\n\r\n" + b'{"ok":true}'
)


class GatewayFleetSim:
    def __init__(self, network: str, count: int, port: int = 18789) -> None:
        hosts = ipaddress.ip_network(network).hosts()
        self.ips = [str(next(hosts)) for _ in range(count)]
        self.port = port
        self.states: dict[str, State] = dict.fromkeys(self.ips, "up")
        self.requests: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.hung_now = 0
        self._servers: dict[str, asyncio.Server] = {}
        self._hung: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        for ip in self.ips:
            await self._listen(ip)

    async def stop(self) -> None:
        for writer in list(self._hung):
            writer.close()
        for server in self._servers.values():
            server.close()
        for server in self._servers.values():
            await server.wait_closed()
        self._servers.clear()

    async def set_state(self, ip: str, state: State) -> None:
        """`dead` closes the listener (refused); `up` and `hung` listen again."""
        self.states[ip] = state
        if state == "dead" and ip in self._servers:
            server = self._servers.pop(ip)
            server.close()
            await server.wait_closed()
        elif state != "dead" and ip not in self._servers:
            await self._listen(ip)

    async def _listen(self, ip: str) -> None:
        if self.states[ip] == "dead":
            return

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._serve(ip, reader, writer)

        self._servers[ip] = await asyncio.start_server(serve, ip, self.port, backlog=64)

    async def _serve(
        self, ip: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.requests[ip] += 1
            if self.states[ip] == "hung":
                self.hung_now += 1
                self._hung.add(writer)
                try:
                    await reader.read()  # until the client gives up and closes
                finally:
                    self.hung_now -= 1
                    self._hung.discard(writer)
                return
            writer.write(_OK)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.in_flight -= 1
            writer.close()
