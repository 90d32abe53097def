"""SSH to customer servers, with the host key pinned and secrets kept off every
command line and out of every log.

The host key comes from the cloud-init user data we generated (`cloud_init.py`), so
the first connection is already verified; a server presenting another key is never
talked to. Secrets travel on stdin as the first lines of the script given to
`bash -s` (sshd only accepts LANG/LC_* from the client's environment, and a command
line is visible in `ps` and in logs), and every secret value is replaced by
`[redacted]` in the output we hand back, which ends up in the provision log.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shlex
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import asyncssh

log = logging.getLogger(__name__)

REDACTED = b"[redacted]"
OUTPUT_LIMIT = 64 * 1024  # the tail of a command's output is what explains a failure
READ_LIMIT = 1024 * 1024
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NOTHING: Mapping[str, str] = MappingProxyType({})

# Polling for SSH after a server boots: start fast (the simulator and a golden image
# come up quickly), then look again after a small share of the time waited so far, so
# that SSH is noticed at most 3 % late (a refused connect costs next to nothing).
FIRST_POLL_S = 0.05
POLL_SHARE = 0.03
MAX_POLL_S = 2.0


class SshError(Exception):
    """Any SSH failure; `code` says which, for the provision log and the alert."""

    code = "ssh_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class HostKeyMismatch(SshError):
    """The server presented a host key other than the pinned one: maybe not our server.
    Never connect, never retry silently: alert a human."""

    code = "host_key_mismatch"


class SshUnavailable(SshError):
    """Refused, timed out, connection lost: transient, the step may be retried."""

    code = "ssh_unavailable"


class CommandTimeout(SshError):
    """The command ran longer than allowed; `output` is what it printed so far."""

    code = "command_timeout"

    def __init__(self, message: str, output: str) -> None:
        super().__init__(message)
        self.output = output


@dataclass(frozen=True)
class CommandResult:
    exit_status: int
    output: str  # stdout and stderr interleaved, secrets redacted, the last 64 KiB


def known_hosts_line(ip: str, port: int, host_key: str) -> str:
    """OpenSSH writes the port only when it is not 22, and asyncssh matches the same way."""
    host = ip if port == 22 else f"[{ip}]:{port}"
    return f"{host} {' '.join(host_key.split()[:2])}\n"


def stdin_prefix(secrets: Mapping[str, str]) -> str:
    """`NAME='value'` lines that `bash -s` runs before the script (shell variables, not
    exported, so child processes do not inherit them)."""
    lines = []
    for name, value in secrets.items():
        if not _NAME.fullmatch(name):
            raise ValueError(f"not a shell variable name: {name!r}")
        if "\0" in value:
            raise ValueError(f"{name} contains a NUL byte")
        lines.append(f"{name}='" + value.replace("'", "'\\''") + "'\n")
    return "".join(lines)


class _Tail:
    """Keeps the last bytes of a stream plus enough slack that a secret cut by the
    trimming can be dropped whole, then redacts."""

    def __init__(self, secrets: list[bytes], limit: int) -> None:
        self.secrets = sorted(secrets, key=len, reverse=True)
        self.limit = limit
        self.slack = max((len(s) for s in self.secrets), default=0)
        self.buffer = bytearray()
        self.trimmed = False

    def add(self, data: bytes) -> None:
        self.buffer += data
        keep = self.limit + self.slack
        if len(self.buffer) > 2 * keep:  # trim now and then, not on every chunk
            del self.buffer[:-keep]
            self.trimmed = True

    def text(self) -> str:
        data = bytes(self.buffer)
        for secret in self.secrets:
            data = data.replace(secret, REDACTED)
        if self.trimmed:
            # The first bytes may hold the end of a secret whose start was trimmed away.
            data = data[self.slack :]
        return data[-self.limit :].decode(errors="replace")


class SshRunner:
    """Runs commands on customer servers as `user`, one connection per call."""

    def __init__(
        self,
        private_key_path: Path,
        port: int,
        *,
        connect_timeout_s: float = 10.0,
        user: str = "root",
    ) -> None:
        self.private_key_path = private_key_path
        self.port = port
        self.connect_timeout_s = connect_timeout_s
        self.user = user
        self._client_key: asyncssh.SSHKey | None = None

    def _key(self) -> asyncssh.SSHKey:
        if self._client_key is None:
            self._client_key = asyncssh.read_private_key(self.private_key_path)
        return self._client_key

    async def _connect(self, ip: str, host_key: str) -> asyncssh.SSHClientConnection:
        try:
            known_hosts = asyncssh.import_known_hosts(known_hosts_line(ip, self.port, host_key))
        except (ValueError, asyncssh.KeyImportError) as error:
            raise SshError(f"unusable pinned host key: {error}", code="bad_host_key") from None
        try:
            return await asyncssh.connect(
                ip,
                port=self.port,
                username=self.user,
                client_keys=[self._key()],
                known_hosts=known_hosts,  # pinned: never None
                connect_timeout=self.connect_timeout_s,
                preferred_auth="publickey",
                agent_path=None,  # only our key, whatever the environment holds
                config=[],  # and no ~/.ssh/config of whoever runs the backend
                login_timeout=self.connect_timeout_s,
                keepalive_interval=30,
            )
        except asyncssh.HostKeyNotVerifiable:
            raise HostKeyMismatch(
                f"{ip}:{self.port} presented a host key other than the pinned one"
            ) from None
        except asyncssh.PermissionDenied:
            raise SshError(
                f"{ip}:{self.port} refused our key for {self.user}", code="permission_denied"
            ) from None
        except (OSError, asyncssh.Error) as error:
            raise SshUnavailable(f"{ip}:{self.port}: {_describe(error)}") from None

    async def wait_ready(
        self,
        ip: str,
        host_key: str,
        *,
        timeout_s: float,
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        """Return once SSH accepts us with the pinned key. A mismatching key raises at
        once; a refused key is retried (cloud-init may not have written it yet)."""
        loop = asyncio.get_running_loop()
        # Time spent = attempts (real time) + sleeps (the clock's time), so a fake clock
        # that returns from sleep at once still sees the deadline approach.
        spent, delay = 0.0, FIRST_POLL_S
        attempts = 0
        while True:
            attempts += 1
            started = loop.time()
            try:
                conn = await self._connect(ip, host_key)
            except SshError as error:
                if not isinstance(error, SshUnavailable) and error.code != "permission_denied":
                    raise  # a mismatching or unusable host key: waiting will not help
                spent += loop.time() - started
                if spent + delay > timeout_s:
                    log.info("ssh %s: not ready after %d attempts: %s", ip, attempts, error)
                    if isinstance(error, SshUnavailable):
                        raise SshUnavailable(
                            f"{ip}:{self.port} not reachable over SSH within {timeout_s:g} s:"
                            f" {error}"
                        ) from None
                    raise
                await sleep(delay)
                spent += delay
                # Look again after a share of the time waited so far: never more than
                # POLL_SHARE late, and fewer connects the longer a server takes.
                delay = min(MAX_POLL_S, max(FIRST_POLL_S, spent * POLL_SHARE))
                continue
            await _close(conn)
            log.debug("ssh %s: ready after %d attempts", ip, attempts)
            return

    async def run(
        self,
        ip: str,
        host_key: str,
        script: str,
        *,
        secrets: Mapping[str, str] = _NOTHING,
        variables: Mapping[str, str] = _NOTHING,
        timeout_s: float = 900,
    ) -> CommandResult:
        """Run `script` with `bash -s`, the `secrets` and then the non-secret `variables`
        set as shell variables on the lines before it. The output has every secret value
        replaced by `[redacted]` and is cut to its last 64 KiB."""
        stdin = stdin_prefix(secrets) + stdin_prefix(variables) + script
        if not stdin.endswith("\n"):
            stdin += "\n"
        tail = _Tail([v.encode() for v in secrets.values() if v], OUTPUT_LIMIT)
        conn = await self._connect(ip, host_key)
        try:
            async with asyncio.timeout(timeout_s):
                status = await self._bash(conn, stdin.encode(), tail)
        except TimeoutError:
            raise CommandTimeout(
                f"{ip}: script still running after {timeout_s:g} s", tail.text()
            ) from None
        except (OSError, asyncssh.Error) as error:
            raise SshUnavailable(f"{ip}: connection lost: {_describe(error)}") from None
        finally:
            await _close(conn)
        return CommandResult(status, tail.text())

    async def _bash(self, conn: asyncssh.SSHClientConnection, stdin: bytes, tail: _Tail) -> int:
        process: Any = await conn.create_process("bash -s", encoding=None, stderr=asyncssh.STDOUT)
        process.stdin.write(stdin)
        process.stdin.write_eof()
        while data := await process.stdout.read(65536):
            tail.add(data)
        completed = await process.wait()
        status = completed.exit_status
        if status is None:  # killed by a signal: report it as a shell would
            signal = completed.exit_signal[0] if completed.exit_signal else "?"
            tail.add(f"\n[terminated by signal {signal}]\n".encode())
            return 255
        return int(status)

    async def read_file(self, ip: str, host_key: str, path: str) -> str:
        """A file's whole text, as is (it may be a secret: never log it)."""
        conn = await self._connect(ip, host_key)
        try:
            async with asyncio.timeout(60):
                result = await conn.run(f"cat -- {shlex.quote(path)}", encoding=None)
        except TimeoutError:
            raise SshUnavailable(f"{ip}: reading {path} timed out") from None
        except (OSError, asyncssh.Error) as error:
            raise SshUnavailable(f"{ip}: connection lost: {_describe(error)}") from None
        finally:
            await _close(conn)
        stdout = result.stdout if isinstance(result.stdout, bytes) else b""
        if result.exit_status != 0:
            stderr = result.stderr if isinstance(result.stderr, bytes) else b""
            raise SshError(
                f"{ip}: cannot read {path}: {stderr.decode(errors='replace').strip()[:200]}",
                code="read_failed",
            )
        if len(stdout) > READ_LIMIT:
            raise SshError(f"{ip}: {path} is larger than {READ_LIMIT} bytes", code="read_failed")
        return stdout.decode(errors="replace")


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text.splitlines()[0][:200] if text else type(error).__name__


async def _close(conn: asyncssh.SSHClientConnection) -> None:
    conn.close()
    try:
        async with asyncio.timeout(5):
            await conn.wait_closed()
    except (TimeoutError, OSError, asyncssh.Error):
        conn.abort()
