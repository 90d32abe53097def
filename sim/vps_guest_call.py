"""One call of a shimmed tool, inside a simulated VPS (stdlib only; see `vps_guest.py`).

The shim (`/run/ocsim/shim`, `sim/vps_shim.py`) sends on a unix stream socket: a header,
its stdin, stdout, stderr and working directory as descriptors (SCM_RIGHTS), then its
argv (the tool first) and environment, NUL-separated. Whoever runs the call becomes the
caller first: its descriptors, directory, umask, credentials (SO_PEERCRED, and the
supplementary groups from /proc) and environment. `vps_guest_server.py` runs a call
either in a worker that comes back to itself afterwards (`as_caller`), or in a fork
that is the caller's for good (`run_for_good`). In a worker, sudo runs a simulated
tool there too, as the target user (what exec'ing the tool's shim would come to), and
anything else in a fork of its own (`sudo_in_place`).
"""

from __future__ import annotations

import contextlib
import io
import os
import selectors
import signal
import socket
import struct
import sys
import traceback
from collections.abc import Callable, Iterator

from sim.vps_guest import SudoPlan, shim_tool, sudo_exec

SOCKET = "/run/ocsim-guest.sock"
MAGIC = b"OCS1"
# magic, which descriptors follow (bit 0-2: stdin/stdout/stderr, bit 3: cwd), umask,
# number of arguments (the tool first), number of environment entries, blob length
HEADER = struct.Struct("<4sIIIII")
MAX_BLOB = 4 * 1024 * 1024


class Request:
    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.fds: list[int] = []
        self.mask = 0
        self.umask = 0o022
        self.argv: list[str] = []
        self.env: dict[str, str] = {}
        pid, self.uid, self.gid = struct.unpack(
            "3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        )
        self.groups = _groups(pid)

    def read(self) -> None:
        data, ancillary, _, _ = self.conn.recvmsg(HEADER.size, socket.CMSG_SPACE(4 * 4))
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                usable = len(payload) - len(payload) % 4
                self.fds += list(struct.unpack(f"{usable // 4}i", payload[:usable]))
        while len(data) < HEADER.size:
            more = self.conn.recv(HEADER.size - len(data))
            if not more:
                raise ValueError("short header")
            data += more
        magic, self.mask, self.umask, nargs, nenv, length = HEADER.unpack(data)
        if magic != MAGIC or length > MAX_BLOB or len(self.fds) != bin(self.mask).count("1"):
            raise ValueError("malformed request")
        blob = b""
        while len(blob) < length:
            more = self.conn.recv(length - len(blob))
            if not more:
                raise ValueError("short request")
            blob += more
        parts = blob.split(b"\0")[: nargs + nenv]
        if len(parts) != nargs + nenv or nargs < 1:
            raise ValueError("malformed request")
        self.argv = [os.fsdecode(p) for p in parts[:nargs]]
        for entry in parts[nargs:]:
            key, sep, value = os.fsdecode(entry).partition("=")
            if sep and key:
                self.env[key] = value

    def close_fds(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []


def _groups(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Groups:"):
                    return [int(g) for g in line.split()[1:]]
    except OSError:
        pass
    return []


def become(request: Request, *, for_good: bool) -> None:
    """Take over the caller's descriptors, directory, umask, credentials (keeping root as
    the saved user id unless `for_good`) and environment."""
    given = iter(request.fds)
    for target in range(4):
        if not request.mask & (1 << target):
            if target < 3:
                with contextlib.suppress(OSError):
                    os.close(target)
            continue
        fd = next(given)
        if target == 3:
            try:  # as root still: the caller's cwd may be closed to its new user
                os.fchdir(fd)
            except OSError:
                os.chdir("/")
        else:
            os.dup2(fd, target)
    if for_good:
        os.closerange(3, 65536)
    os.umask(request.umask)
    os.setgroups(request.groups)
    os.setresgid(request.gid, request.gid, request.gid)
    os.setresuid(request.uid, request.uid, request.uid if for_good else 0)
    os.environ.clear()
    os.environ.update(request.env)
    _fresh_streams()


def _stream(fd: int, write: bool, **options: bool | str) -> io.TextIOWrapper | None:
    try:
        raw = io.FileIO(fd, "w" if write else "r", closefd=False)
    except (OSError, ValueError):
        return None  # closed, as Python leaves it at start-up
    buffered = io.BufferedWriter(raw) if write else io.BufferedReader(raw)
    return io.TextIOWrapper(buffered, encoding="utf-8", **options)  # type: ignore[arg-type]


def _fresh_streams() -> None:
    """sys.stdin/stdout/stderr on the caller's descriptors, as a new Python makes them."""
    sys.stdin = _stream(0, False)
    sys.stdout = _stream(1, True, line_buffering=os.isatty(1))
    sys.stderr = _stream(2, True, errors="backslashreplace", line_buffering=True)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()


def call_tool(argv: list[str]) -> int:
    """The tool's exit status, as a Python of its own would end."""
    from sim.vps_guest import main

    try:
        status = main(argv)
    except SystemExit as done:
        if done.code is None or isinstance(done.code, int):
            status = done.code or 0
        else:
            sys.stderr.write(f"{done.code}\n")
            status = 1
    except Exception:
        traceback.print_exc()
        status = 1
    _flush()
    return status & 0xFF


def run_for_good(request: Request) -> None:
    """In a fork: be the caller, run the tool (which may exec), exit with its status."""
    status = 1
    try:
        become(request, for_good=True)
        status = call_tool(request.argv)
    except BaseException:
        traceback.print_exc()
    finally:
        _flush()
        os._exit(status)


@contextlib.contextmanager
def as_caller(request: Request) -> Iterator[None]:
    """Be the caller for the length of the block, then this process again (a worker
    that is root, in /, with its own stdio, umask, groups and environment)."""
    saved_fds = [os.dup(fd) for fd in range(3)]
    saved_streams = (sys.stdin, sys.stdout, sys.stderr)
    saved_env = dict(os.environ)
    saved_groups = os.getgroups()
    umask = os.umask(0o022)
    os.umask(umask)
    try:
        become(request, for_good=False)
        yield
    finally:
        _flush()
        os.setresuid(0, 0, 0)
        os.setresgid(0, 0, 0)
        os.setgroups(saved_groups)
        os.umask(umask)
        os.chdir("/")
        os.environ.clear()
        os.environ.update(saved_env)
        for target, fd in enumerate(saved_fds):
            os.dup2(fd, target)
            os.close(fd)
        sys.stdin, sys.stdout, sys.stderr = saved_streams
        request.close_fds()


def sudo_in_place(conn: socket.socket) -> Callable[[SudoPlan], int]:
    """How sudo runs its command in a worker, which must not exec."""

    def run(plan: SudoPlan) -> int:
        tool = shim_tool(plan.command[0], plan.env.get("PATH", ""))
        if tool is not None and not plan.login:
            entry = plan.entry
            if entry.pw_uid != os.geteuid():  # the worker takes root back afterwards
                os.setgroups(os.getgrouplist(entry.pw_name, entry.pw_gid))
                os.setresgid(entry.pw_gid, entry.pw_gid, entry.pw_gid)
                os.setresuid(entry.pw_uid, entry.pw_uid, 0)
            os.environ.clear()
            os.environ.update(plan.env)
            return call_tool([tool, *plan.command[1:]])
        _flush()
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                os.closerange(3, 65536)
                status = sudo_exec(plan)  # returns only if it cannot exec
            except BaseException:
                traceback.print_exc()
            finally:
                _flush()
                os._exit(status)
        code = os.waitstatus_to_exitcode(relay(pid, conn))
        return code if code >= 0 else 128 - code

    return run


def relay(pid: int, conn: socket.socket) -> int:
    """Wait for a call's own process, passing on the shim's signals; its wait status."""
    pidfd = os.pidfd_open(pid)
    with selectors.DefaultSelector() as selector:
        selector.register(pidfd, selectors.EVENT_READ)
        selector.register(conn, selectors.EVENT_READ)
        while not any(key.fd == pidfd for key, _ in selector.select()):
            if not pass_signals(pid, conn):
                selector.unregister(conn)
    os.close(pidfd)
    return os.waitpid(pid, 0)[1]


def pass_signals(pid: int, conn: socket.socket) -> bool:
    """Pass on the signal numbers the shim sent; False once it is gone (it died, and
    the call's process gets SIGKILL)."""
    try:
        data = conn.recv(64)
    except (BlockingIOError, TimeoutError):
        return True
    except OSError:
        data = b""
    for number in data or [signal.SIGKILL]:
        with contextlib.suppress(OSError, ValueError):
            os.kill(pid, number)
    return bool(data)
