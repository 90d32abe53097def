"""The disk and the running system of one simulated VPS, isolated from the host.

Approach (one, on purpose): a private mount namespace per powered-on VPS, built by
`unshare` as root, holding a new root filesystem that the VPS's commands are
chrooted into. Layout of the VPS's root:

- `/etc`, `/usr`, `/var` (and `/bin`, `/lib`... when they are not symlinks into
  `/usr`): overlayfs with the host's directory as the read-only lower layer and the
  VPS's disk (`disk/upper/<dir>`) as the upper layer. The VPS starts from a working
  Linux userland (bash, coreutils, python3) and every write lands on its disk;
  overlayfs never writes to a lower layer.
- `/home`, `/root`, `/tmp`, `/opt`, `/srv`, `/mnt`, `/media`: plain directories of
  the VPS's disk, so nothing of the host's home directories is even visible.
- `/proc` of the VPS's own PID namespace, a minimal `/dev` (null, zero, random...),
  a tmpfs `/run`, and `/run/ocsim`: the simulator's guest code and the VPS's
  identity, read-only. No `/sys`, no host sockets: a stray `/usr/bin/systemctl`
  cannot reach the host's systemd.

The namespace is held by a `sleep` that is PID 1 of the VPS's PID namespace, so a
power-off (SIGKILL to the `unshare` parent, whose death kills PID 1) ends every
process of the VPS at once, as a real power cut would; `setpriv --pdeathsig` ties
it to the simulator's own life, so a crashed test run leaves no holder behind.
Mount propagation is private, so nothing mounted inside is visible outside.
Commands enter with `nsenter` into the holder's namespaces and root, with
CAP_SYS_ADMIN (mount/umount) and a few other capabilities dropped from their
bounding set, so a command cannot undo the mounts and reach the host's tree. This
is a safety net for the product's own scripts on a developer's or CI machine, not a
security boundary against hostile code. Needs root, Linux >= 5.11 and util-linux
(`unshare`, `nsenter`, `setpriv`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from pathlib import Path
from typing import Any

# A fresh Ubuntu server has none of these; the host running the simulator may.
HIDDEN_TOOLS = ("node", "nodejs", "npm", "npx", "corepack", "openclaw", "yarn", "pnpm")
PATH_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin")
UBUNTU_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/snap/bin"
OVERLAID = ("etc", "usr", "var", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
PLAIN = ("home", "root", "tmp", "opt", "srv", "mnt", "media")
DROPPED_CAPS = "-sys_admin,-sys_module,-sys_boot,-sys_time,-sys_rawio,-sys_ptrace,-net_admin"

_SETUP = r"""
set -euo pipefail
disk=$1 root=$2 guest=$3 host_name=$4 first_boot=$5 pybind=$6
mount -t tmpfs -o mode=0755 vps-root "$root"
for d in etc usr var bin sbin lib lib32 lib64 libx32; do
  if [ -L "/$d" ]; then ln -s "$(readlink "/$d")" "$root/$d"
  elif [ -d "/$d" ]; then
    mkdir -p "$root/$d" "$disk/upper/$d" "$disk/work/$d"
    mount -t overlay "vps-$d" \
      -o "lowerdir=/$d,upperdir=$disk/upper/$d,workdir=$disk/work/$d" "$root/$d"
  fi
done
for d in home root tmp opt srv mnt media; do
  mkdir -p "$root/$d"; mount --bind "$disk/$d" "$root/$d"
done
mkdir -p "$root/proc" "$root/dev" "$root/run" "$root/sys"
mount -t proc proc "$root/proc"
mount -t tmpfs -o mode=0755 vps-dev "$root/dev"
for n in null zero full random urandom tty; do
  touch "$root/dev/$n"; mount --bind "/dev/$n" "$root/dev/$n"
done
ln -s /proc/self/fd "$root/dev/fd"
ln -s /proc/self/fd/0 "$root/dev/stdin"
ln -s /proc/self/fd/1 "$root/dev/stdout"
ln -s /proc/self/fd/2 "$root/dev/stderr"
mkdir -p "$root/dev/shm" && mount -t tmpfs -o mode=1777 vps-shm "$root/dev/shm"
mount -t tmpfs -o mode=0755 vps-run "$root/run"
mkdir -p "$root/run/ocsim" "$root/run/lock" "$root/run/user"
mount --bind "$guest" "$root/run/ocsim"
mount -o remount,bind,ro "$root/run/ocsim"
if [ -n "$pybind" ]; then
  mkdir -p "$root/run/ocsim-python"
  mount --bind "$pybind" "$root/run/ocsim-python"
  mount -o remount,bind,ro "$root/run/ocsim-python"
fi
if [ "$first_boot" = 1 ]; then
  for t in HIDDEN; do for d in PATHDIRS; do
    if [ -e "$root$d/$t" ] || [ -L "$root$d/$t" ]; then rm -f "$root$d/$t"; fi
  done; done
  for d in /usr/lib/node_modules /usr/local/lib/node_modules; do
    if [ -e "$root$d" ]; then rm -rf "$root$d"; fi
  done
fi
hostname "$host_name"
# Fail closed: the VPS's own identity file must be where commands will look.
test -f "$root/run/ocsim/vps.json"
echo ready
exec chroot "$root" /bin/sleep infinity
""".replace("HIDDEN", " ".join(HIDDEN_TOOLS)).replace("PATHDIRS", " ".join(PATH_DIRS))


class SandboxError(RuntimeError):
    pass


def _child_of(pid: int) -> int | None:
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may contain spaces, so split after ')'.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            return int(entry)
    return None


class Sandbox:
    """Host-side directory of one VPS: `disk/` (what survives power cycles, is
    snapshotted and wiped by a rebuild), `guest/` (bound read-only at
    `/run/ocsim`) and `mnt/` (the mount point of the root, empty on the host)."""

    def __init__(self, directory: Path, hostname: str) -> None:
        self.dir = directory
        self.disk = directory / "disk"
        self.guest = directory / "guest"
        self.mountpoint = directory / "mnt"
        self.hostname = hostname
        self._holder: asyncio.subprocess.Process | None = None
        self._init_pid: int | None = None
        self._daemons: list[asyncio.subprocess.Process] = []

    # -- the disk ------------------------------------------------------------

    @property
    def fresh(self) -> bool:
        return not (self.disk / ".ocsim-initialized").exists()

    def make_disk(self) -> None:
        for name in PLAIN:
            (self.disk / name).mkdir(parents=True, exist_ok=True)
        (self.disk / "tmp").chmod(0o1777)
        (self.disk / "root").chmod(0o700)
        for name in ("etc", "usr", "var"):
            (self.disk / "upper" / name).mkdir(parents=True, exist_ok=True)
            (self.disk / "work" / name).mkdir(parents=True, exist_ok=True)
        self.guest.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)

    def path(self, vps_path: str) -> Path:
        """Where a file the VPS wrote lives on the host (only what the VPS wrote:
        the host's own files under an overlay are not returned)."""
        parts = Path(vps_path).parts[1:]
        if not parts:
            raise ValueError("the VPS's root itself is not on its disk")
        top, rest = parts[0], parts[1:]
        if top in PLAIN:
            return self.disk.joinpath(top, *rest)
        return self.disk.joinpath("upper", top, *rest)

    def exists(self, vps_path: str) -> bool:
        """The VPS wrote this path (a symlink counts, wherever it points)."""
        path = self.path(vps_path)
        return path.is_symlink() or (path.exists() and not path.is_char_device())

    def read(self, vps_path: str) -> str | None:
        path = self.path(vps_path)
        # A symlink the VPS made must not make the simulator read a host file.
        if not path.resolve().is_relative_to(self.disk.resolve()):
            return None
        if not path.is_file():  # missing, or an overlay whiteout (a device node)
            return None
        try:
            return path.read_text(errors="replace")
        except OSError:
            return None

    def mark_initialized(self) -> None:
        (self.disk / ".ocsim-initialized").write_text("cloud-init done\n")

    async def wipe(self) -> None:
        await self.power_off()
        await _run("rm", "-rf", "--one-file-system", str(self.disk))
        self.make_disk()

    async def copy_disk_to(self, target: Path) -> None:
        # cp -a keeps overlay whiteouts (device nodes) and ownership.
        await _run("cp", "-a", "--", str(self.disk), str(target))

    async def restore_disk_from(self, source: Path) -> None:
        await self.power_off()
        await _run("rm", "-rf", "--one-file-system", str(self.disk))
        await _run("cp", "-a", "--", str(source), str(self.disk))
        self.make_disk()

    async def remove(self) -> None:
        await self.power_off()
        await _run("rm", "-rf", "--one-file-system", str(self.dir))

    # -- power ---------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._holder is not None and self._holder.returncode is None

    async def power_on(self, python_bind: str | None) -> None:
        if self.running:
            return
        first_boot = "1" if self.fresh else "0"
        holder = await asyncio.create_subprocess_exec(
            "setpriv",
            "--pdeathsig",
            "KILL",
            "--",
            "unshare",
            "--mount",
            "--pid",
            "--fork",
            "--uts",
            "--ipc",
            "--kill-child",
            "--propagation",
            "private",
            "--",
            "/bin/bash",
            "-c",
            _SETUP,
            "vps-setup",
            str(self.disk),
            str(self.mountpoint),
            str(self.guest),
            self.hostname,
            first_boot,
            python_bind or "",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
        )
        self._holder = holder
        assert holder.stdout is not None and holder.stderr is not None
        line = await holder.stdout.readline()
        if line.strip() != b"ready":
            await self.power_off()
            error = (await holder.stderr.read()).decode(errors="replace").strip()
            raise SandboxError(f"VPS sandbox did not start (needs root and util-linux): {error}")
        self._init_pid = _child_of(holder.pid)
        if self._init_pid is None:
            await self.power_off()
            raise SandboxError("VPS sandbox: no init process found")
        if first_boot == "1":
            self.mark_initialized()

    async def power_off(self) -> None:
        holder, self._holder, self._init_pid = self._holder, None, None
        if holder is None:
            return
        if holder.returncode is None:
            # unshare ignores SIGTERM while it waits; its death SIGKILLs PID 1,
            # which takes every process of the VPS's PID namespace with it.
            with contextlib.suppress(ProcessLookupError):
                holder.send_signal(signal.SIGKILL)
        await holder.wait()
        daemons, self._daemons = self._daemons, []
        for daemon in daemons:  # their namespace's PID 1 is gone, and they with it
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await daemon.wait()

    async def spawn(
        self,
        command: str,
        env: dict[str, str],
        cwd: str = "/root",
        *,
        stdin: int = asyncio.subprocess.PIPE,
        stdout: int = asyncio.subprocess.PIPE,
        stderr: Any = asyncio.subprocess.PIPE,
    ) -> asyncio.subprocess.Process:
        """Start `bash -c command` inside the VPS, by default with pipes for all three
        streams."""
        if not self.running or self._init_pid is None:
            raise SandboxError("the VPS is not running")
        script = 'cd "$1" 2>/dev/null || cd /; shift; exec /bin/bash -c "$1"'
        return await asyncio.create_subprocess_exec(
            "nsenter",
            "--target",
            str(self._init_pid),
            "--mount",
            "--uts",
            "--ipc",
            "--pid",
            "--root",
            "--wd",
            "--",
            "/usr/bin/setpriv",
            f"--bounding-set={DROPPED_CAPS}",
            "--",
            "/bin/bash",
            "-c",
            script,
            "vps-login",
            cwd,
            command,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            env=env,
        )

    async def start_daemon(
        self, command: str, env: dict[str, str], log_name: str, timeout_s: float = 10.0
    ) -> bool:
        """Start `bash -c command` inside the VPS to run until the power goes, its
        stderr appended to `log_name` in the sandbox's directory; True once it prints
        `ready`."""
        with (self.dir / log_name).open("ab") as errors:
            daemon = await self.spawn(
                command, env, "/", stdin=asyncio.subprocess.DEVNULL, stderr=errors
            )
        self._daemons.append(daemon)
        assert daemon.stdout is not None
        try:
            async with asyncio.timeout(timeout_s):
                line = await daemon.stdout.readline()
        except TimeoutError:
            line = b""
        return line.strip() == b"ready"


def python_for_guest() -> tuple[str, str | None]:
    """(interpreter path inside the VPS, host directory to bind at
    /run/ocsim-python or None). The guest shims are stdlib-only Python."""
    if Path("/usr/bin/python3").exists():
        return "/usr/bin/python3", None
    import sys

    base = Path(sys.base_prefix)
    exe = Path(os.path.realpath(sys.executable))
    return f"/run/ocsim-python/{exe.relative_to(base)}", str(base)


async def _run(*argv: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise SandboxError(f"{argv[0]} failed: {err.decode(errors='replace').strip()}")


def remove_tree(path: Path) -> None:
    """Synchronous removal for a sandbox that is powered off (no mounts inside)."""
    shutil.rmtree(path, ignore_errors=True)
