"""The SSH daemon of one simulated VPS (asyncssh, on the VPS's own address).

Connections are accepted by hand (`sock_accept`) so the Hetzner firewall can
refuse a connection before the SSH banner, as a real REJECT would, and only then
is the socket handed to asyncssh (`run_server`). Only `root`, only public keys,
and only the keys in the VPS's `/root/.ssh/authorized_keys` (cloud-init wrote the
Hetzner API keys and the user-data keys there at first boot) are accepted. Each
session's command runs in the VPS's sandbox; its exit status and output are
recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncssh

log = logging.getLogger(__name__)

Admit = Callable[[str], bool]
Handler = Callable[[asyncssh.SSHServerProcess[bytes]], Awaitable[None]]


class _RootKeysOnly(asyncssh.SSHServer):
    def __init__(self, keys: Callable[[], list[str]]) -> None:
        self._keys = keys

    def begin_auth(self, username: str) -> bool:
        return True  # authentication is always required

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        if username != "root":
            return False
        offered = key.public_data
        for line in self._keys():
            try:
                if asyncssh.import_public_key(line).public_data == offered:
                    return True
            except (asyncssh.KeyImportError, ValueError):
                continue  # a malformed line in authorized_keys is skipped, as sshd does
        return False


class SshDaemon:
    def __init__(
        self,
        *,
        ip: str,
        port: int,
        host_key: asyncssh.SSHKey,
        authorized_keys: Callable[[], list[str]],
        admit: Admit,
        handler: Handler,
    ) -> None:
        self.ip = ip
        self.port = port
        self.host_key = host_key
        self.authorized_keys = authorized_keys
        self.admit = admit
        self.handler = handler
        self._sock: socket.socket | None = None
        self._accept_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._conns: set[Any] = set()
        self.listening_since: float | None = None  # time.monotonic()

    @property
    def running(self) -> bool:
        return self._sock is not None

    async def start(self) -> None:
        if self._sock is not None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.ip, self.port))
        sock.listen(64)
        sock.setblocking(False)
        self._sock = sock
        self.listening_since = time.monotonic()
        self._accept_task = asyncio.get_running_loop().create_task(self._accept(sock))

    async def stop(self) -> None:
        sock, self._sock = self._sock, None
        task, self._accept_task = self._accept_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if sock is not None:
            sock.close()
        for conn in list(self._conns):
            conn.abort()
        for pending in list(self._tasks):
            pending.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._conns.clear()

    async def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            conn_sock, peer = await loop.sock_accept(sock)
            if not self.admit(peer[0]):
                # RST rather than FIN: the client sees "connection reset/refused".
                conn_sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                conn_sock.close()
                continue
            task = loop.create_task(self._serve(conn_sock))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve(self, conn_sock: socket.socket) -> None:
        try:
            conn = await asyncssh.run_server(
                conn_sock,
                server_factory=lambda: _RootKeysOnly(self.authorized_keys),
                server_host_keys=[self.host_key],
                process_factory=self.handler,
                encoding=None,
                allow_pty=True,
                x11_forwarding=False,
                agent_forwarding=False,
                login_timeout=30,
            )
        except (OSError, asyncssh.Error) as error:
            log.debug("vps %s: ssh handshake failed: %s", self.ip, error)
            conn_sock.close()
            return
        self._conns.add(conn)
        try:
            await conn.wait_closed()
        finally:
            self._conns.discard(conn)
