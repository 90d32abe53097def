"""Guest command server: runs the shimmed tools of a simulated VPS in a few Python
processes started at boot, instead of a new Python for every call (~30 ms each, which
made up most of the install script's time in the simulator).

Runs INSIDE the VPS, as root (stdlib only, like `vps_guest.py`), started by the
simulator once the VPS's sandbox is up. The shim (`/run/ocsim/shim`, see
`sim/vps_shim.py`) connects to `SOCKET` and sends the call (`vps_guest_call.py`); it
gets the tool's wait status back and exits with it.

The server hands each call to an idle worker, a process forked at start with the tools
imported, which runs the tool as the caller and comes back to itself (no fork, no
start-up: the call costs little more than the tool's own work); sudo runs a simulated
tool there as well, and gets a fork only to exec a real program. When every worker is
busy (a pipeline, a sudo waiting for what it runs), the server forks a process for
the call instead, so a call never waits for another. A signal the shim receives is
passed on to a call's own process, and a shim that dies kills it; a call a worker runs
in itself is not interrupted (those take milliseconds).
"""

from __future__ import annotations

import contextlib
import gc
import os
import selectors
import socket
import struct
import sys
import traceback

import sim.vps_guest as guest
from sim.vps_guest_call import (
    SOCKET,
    Request,
    as_caller,
    call_tool,
    pass_signals,
    run_for_good,
    sudo_in_place,
)

WORKERS = 3
STATUS = struct.Struct("<i")  # a wait status, as waitpid reports it


def _send_fd(channel: socket.socket, fd: int) -> None:
    channel.sendmsg([b"C"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))])


def _receive_fd(channel: socket.socket) -> int | None:
    _, ancillary, _, _ = channel.recvmsg(1, socket.CMSG_SPACE(4))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS and len(payload) >= 4:
            fd: int = struct.unpack("i", payload[:4])[0]
            return fd
    return None


def _answer(conn: socket.socket, status: int) -> None:
    with contextlib.suppress(OSError):
        conn.setblocking(True)
        conn.sendall(STATUS.pack(status))
    conn.close()


def worker(channel: socket.socket) -> None:
    """A worker's life: take a call, run it, say so, until the server goes."""
    while True:
        fd = _receive_fd(channel)
        if fd is None:
            os._exit(0)  # the server is gone
        conn = socket.socket(fileno=fd)
        conn.settimeout(5)
        request = None
        try:
            request = Request(conn)
            request.read()
            with as_caller(request):
                guest.sudo_runner = sudo_in_place(conn)
                try:
                    status = call_tool(request.argv) << 8
                finally:
                    guest.sudo_runner = None
            _answer(conn, status)
        except (OSError, ValueError, struct.error) as error:
            sys.stderr.write(f"ocsim guest server: call failed: {error}\n")
            if request is not None:
                request.close_fds()
            conn.close()
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        channel.send(b"I")  # idle again


class Server:
    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.selector = selectors.DefaultSelector()
        self.selector.register(listener, selectors.EVENT_READ, ("call", None))
        self.idle: list[socket.socket] = []
        self.own: dict[int, tuple[int, socket.socket | None]] = {}  # pidfd: (pid, conn)

    def _fds(self) -> list[int]:
        fds = [self.selector.fileno()]
        for key in self.selector.get_map().values():
            if key.fileobj is not self.listener:
                fds.append(key.fd)
        return fds

    def start_worker(self) -> None:
        ours, theirs = socket.socketpair()
        inherited = self._fds()
        pid = os.fork()
        if pid == 0:
            for fd in [*inherited, ours.fileno(), self.listener.fileno()]:
                with contextlib.suppress(OSError):
                    os.close(fd)
            worker(theirs)
        theirs.close()
        self.idle.append(ours)
        self.selector.register(ours, selectors.EVENT_READ, ("worker", pid))

    def serve(self) -> None:
        for _ in range(WORKERS):
            self.start_worker()
        while True:
            for key, _ in self.selector.select():
                kind, item = key.data
                if kind == "call":
                    self.call()
                elif kind == "worker":
                    self.from_worker(key.fileobj, item)  # type: ignore[arg-type]
                elif kind == "shim":
                    self.from_shim(item)
                else:
                    self.reap(key.fd)

    def call(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        if self.idle:
            _send_fd(self.idle.pop(), conn.fileno())
            conn.close()
            return
        pid = os.fork()  # every worker is busy: a process of its own for this call
        if pid == 0:
            for fd in self._fds():
                with contextlib.suppress(OSError):
                    os.close(fd)
            self.listener.close()
            conn.settimeout(5)
            request = Request(conn)
            try:
                request.read()
            except (OSError, ValueError, struct.error) as error:
                sys.stderr.write(f"ocsim guest server: bad request: {error}\n")
                os._exit(1)
            run_for_good(request)
        conn.setblocking(False)
        pidfd = os.pidfd_open(pid)
        self.own[pidfd] = (pid, conn)
        self.selector.register(pidfd, selectors.EVENT_READ, ("exited", None))
        self.selector.register(conn, selectors.EVENT_READ, ("shim", pidfd))

    def from_worker(self, channel: socket.socket, pid: int) -> None:
        try:
            idle = channel.recv(1)
        except OSError:
            idle = b""
        if idle:
            self.idle.append(channel)
            return
        self.selector.unregister(channel)  # the worker died: another takes its place
        if channel in self.idle:
            self.idle.remove(channel)
        channel.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        self.start_worker()

    def from_shim(self, pidfd: int) -> None:
        pid, conn = self.own.get(pidfd, (0, None))
        if conn is None:  # reaped earlier in the same round of events
            return
        if not pass_signals(pid, conn):
            self.selector.unregister(conn)
            conn.close()
            self.own[pidfd] = (pid, None)

    def reap(self, pidfd: int) -> None:
        pid, conn = self.own.pop(pidfd)
        self.selector.unregister(pidfd)
        os.close(pidfd)
        status = os.waitpid(pid, 0)[1]
        if conn is not None:
            self.selector.unregister(conn)
            _answer(conn, status)


def main() -> None:
    sys.path.insert(0, "/run/ocsim/lib")
    # Imported once here, so that a call costs neither a start-up nor the imports.
    import sim.vps_guest
    import sim.vps_guest_curl
    import sim.vps_guest_openclaw
    import sim.vps_guest_packages

    sim.vps_guest.identity()  # read once, before any fork
    gc.freeze()  # forks need not copy the pages of these imports to collect them
    with contextlib.suppress(FileNotFoundError):
        os.unlink(SOCKET)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(SOCKET)
    os.chmod(SOCKET, 0o666)  # noqa: S103 - every user's shims call in, as to a daemon
    listener.listen(128)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 1)  # nobody reads the start-up pipe any more
    os.close(null)
    os.chdir("/")
    Server(listener).serve()


if __name__ == "__main__":
    main()
