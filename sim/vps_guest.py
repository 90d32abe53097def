"""Guest side of the VPS simulator: the shimmed tools, run INSIDE a simulated VPS.

Copied into each VPS at `/run/ocsim/lib/sim/` and run, on behalf of small wrappers
(`/usr/bin/sudo`, `/usr/bin/apt-get`, ... in the VPS's own /usr, see `sim/vps_shim.py`),
by the VPS's guest command server (`vps_guest_server.py`) or else by a python3 of their
own, so this file and `vps_guest_*.py` use the standard library only and must not
import anything else from `sim/`. Every tool first calls the simulator (`begin`, or
`call` for the tools the simulator answers) so the call is recorded and a
`fail_command` knob can fail it. Files are written with ordinary paths: inside the VPS
they land on its own disk.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

IDENTITY = "/run/ocsim/vps.json"
NODESOURCE_LIST = "/etc/apt/sources.list.d/nodesource.list"
NODE_NODESOURCE = "v24.16.0"
NODE_UBUNTU = "v18.19.1"
NPM_VERSION = "11.6.2"
OPENCLAW_LATEST = "2026.9.6"
PACKAGES = "/var/lib/ocsim/packages.json"


_identity: dict[str, Any] = {}


def identity() -> dict[str, Any]:
    """The VPS's identity, read once per process (the guest command server reads it
    before it forks, so its tools do not)."""
    if not _identity:
        with open(IDENTITY) as f:
            _identity.update(json.load(f))
    return _identity


def rpc(op: str, argv: list[str]) -> dict[str, Any]:
    """One call to the simulator: a JSON line out on the VPS's abstract unix socket, the
    JSON answer back (a connection per call; every shim call makes one or two)."""
    body = json.dumps({"op": op, "argv": argv, "user": current_user()}).encode() + b"\n"
    chunks = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(60)
        sock.connect("\0" + identity()["control"])
        sock.sendall(body)
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    if not chunks:
        raise RuntimeError(f"the simulator did not answer {op!r}")
    result: dict[str, Any] = json.loads(b"".join(chunks))
    return result


def current_user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def err(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


def need_root(tool: str, message: str, status: int) -> int | None:
    if os.geteuid() != 0:
        err(message)
        return status
    return None


def write_wrapper(path: str, tool: str) -> None:
    """A tool's entry point, as the simulator writes them at boot (`sim/vps_shim.py`)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(f"#!/run/ocsim/shim {tool}\n")
    os.chmod(path, 0o755)  # noqa: S103 - an executable, as in /usr/bin


def load_packages() -> dict[str, str]:
    try:
        with open(PACKAGES) as f:
            data: dict[str, str] = json.load(f)
        return data
    except (OSError, ValueError):
        return {}


# -- the tools ---------------------------------------------------------------


class SudoPlan(NamedTuple):
    entry: pwd.struct_passwd
    command: list[str]
    env: dict[str, str]
    login: bool


# While the guest command server runs a call in one of its workers, sudo hands it the
# plan rather than exec'ing, which would replace the worker (`vps_guest_call.py`).
sudo_runner: Callable[[SudoPlan], int] | None = None


def sudo(args: list[str]) -> int:
    plan = sudo_plan(args)
    if isinstance(plan, int):
        return plan
    return sudo_runner(plan) if sudo_runner is not None else sudo_exec(plan)


def sudo_plan(args: list[str]) -> SudoPlan | int:
    """Who runs what, with which environment; or the exit status of a refusal."""
    user, login, i = "root", False, 0
    while i < len(args) and args[i].startswith("-"):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if arg in ("-u", "--user"):
            user, i = args[i + 1], i + 2
            continue
        if arg.startswith("--user="):
            user = arg.split("=", 1)[1]
        elif not arg.startswith("--"):
            flags = arg[1:]
            if "u" in flags:  # e.g. -iu openclaw
                user = flags.split("u", 1)[1] or args[i + 1]
                i += 0 if flags.split("u", 1)[1] else 1
                flags = flags.split("u", 1)[0]
            login = login or "i" in flags
        i += 1
    command = args[i:]
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        err(f"sudo: unknown user {user}\nsudo: error initializing audit plugin sudoers_audit\n")
        return 1
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/snap/bin",
        "HOME": entry.pw_dir,
        "USER": user,
        "LOGNAME": user,
        "SHELL": entry.pw_shell or "/bin/sh",
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "SUDO_USER": current_user(),
    }
    for key in ("TERM",):
        if key in os.environ:
            env[key] = os.environ[key]
    if login:
        command = [entry.pw_shell or "/bin/bash", "-l"] + (
            ["-c", " ".join(command)] if command else []
        )
    if not command:
        err("usage: sudo -h | -K | -k | -V\n")
        return 1
    return SudoPlan(entry, command, env, login)


def sudo_exec(plan: SudoPlan) -> int:
    """Become the user and exec the command: returns only if that fails."""
    entry, command = plan.entry, plan.command
    if plan.login:
        os.chdir(entry.pw_dir if os.path.isdir(entry.pw_dir) else "/")
    if entry.pw_uid != os.geteuid():
        os.initgroups(entry.pw_name, entry.pw_gid)
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
    try:
        os.execvpe(command[0], command, plan.env)  # noqa: S606 - sudo runs what it is given
    except FileNotFoundError:
        err(f"sudo: {command[0]}: command not found\n")
        return 1


def shim_tool(command: str, path: str) -> str | None:
    """The simulated tool that `command` is on `path`, if it is one (a shim's wrapper)."""
    found = shutil.which(command, path=path)
    try:
        with open(found or "", "rb") as f:
            head = f.read(128)
    except OSError:
        return None
    prefix = b"#!/run/ocsim/shim "
    if not head.startswith(prefix):
        return None
    return head[len(prefix) :].split(b"\n", 1)[0].strip().decode() or None


def useradd(args: list[str]) -> int:
    if (denied := need_root("useradd", "useradd: Permission denied.\n", 1)) is not None:
        return denied
    opts: dict[str, str] = {}
    flags: set[str] = set()
    name, i = None, 0
    with_value = {
        "-s",
        "--shell",
        "-d",
        "--home-dir",
        "-c",
        "--comment",
        "-G",
        "--groups",
        "-g",
        "-u",
    }
    while i < len(args):
        arg = args[i]
        if arg in with_value:
            opts[arg], i = args[i + 1], i + 2
            continue
        if arg.startswith("-"):
            flags.add(arg)
        else:
            name = arg
        i += 1
    if name is None:
        err("Usage: useradd [options] LOGIN\n")
        return 2
    try:
        pwd.getpwnam(name)
        err(f"useradd: user '{name}' already exists\n")
        return 9
    except KeyError:
        pass
    system = "-r" in flags or "--system" in flags
    uids = [e.pw_uid for e in pwd.getpwall()]
    uid = (
        max(
            [u for u in uids if (u < 1000 if system else 1000 <= u < 60000)]
            + [999 if not system else 100]
        )
        + 1
    )
    home = opts.get("-d") or opts.get("--home-dir") or f"/home/{name}"
    shell = opts.get("-s") or opts.get("--shell") or "/bin/sh"
    with open("/etc/group", "a") as f:
        f.write(f"{name}:x:{uid}:\n")
    with open("/etc/passwd", "a") as f:
        f.write(f"{name}:x:{uid}:{uid}:{opts.get('-c', '')}:{home}:{shell}\n")
    if os.path.exists("/etc/shadow"):
        with open("/etc/shadow", "a") as f:
            f.write(f"{name}:!:20000:0:99999:7:::\n")
    if "-m" in flags or "--create-home" in flags:
        if os.path.isdir("/etc/skel"):
            shutil.copytree("/etc/skel", home, dirs_exist_ok=True)
        os.makedirs(home, exist_ok=True)
        os.chmod(home, 0o750)  # noqa: S103 - useradd's HOME_MODE on Ubuntu
        for root, dirs, files in os.walk(home):
            for entry in [root] + [os.path.join(root, x) for x in dirs + files]:
                os.lchown(entry, uid, uid)
    return 0


def loginctl(args: list[str]) -> int:
    if len(args) >= 2 and args[0] in ("enable-linger", "disable-linger"):
        os.makedirs("/var/lib/systemd/linger", exist_ok=True)
        path = f"/var/lib/systemd/linger/{args[1]}"
        if args[0] == "enable-linger":
            open(path, "a").close()
        elif os.path.exists(path):
            os.remove(path)
        return 0
    if args[:1] == ["show-user"] and len(args) >= 2:
        linger = os.path.exists(f"/var/lib/systemd/linger/{args[1]}")
        out(f"Linger={'yes' if linger else 'no'}\n")
        return 0
    return 0


def _links(args: list[str]) -> bool:
    """`systemctl enable/disable openclaw-gateway`: the unit's symlink is made here."""
    words = [a for a in args if not a.startswith("-")]
    return words[:1] in (["enable"], ["disable"]) and "openclaw-gateway" in " ".join(words)


def systemctl(args: list[str]) -> int:
    words = [a for a in args if not a.startswith("-")]
    if _links(args):
        wants = "/etc/systemd/system/multi-user.target.wants/openclaw-gateway.service"
        unit = "/etc/systemd/system/openclaw-gateway.service"
        if words[0] == "enable":
            if not os.path.exists(unit):
                err("Failed to enable unit: Unit file openclaw-gateway.service does not exist.\n")
                return 1
            if not os.path.lexists(wants):
                os.makedirs(os.path.dirname(wants), exist_ok=True)
                os.symlink(unit, wants)
                err(f"Created symlink {wants} → {unit}.\n")
        elif os.path.lexists(wants):
            os.remove(wants)
            err(f'Removed "{wants}".\n')
    return forward("systemctl", args)


def forward(tool: str, args: list[str]) -> int:
    return _answer(rpc("tool", [tool, *args]))


def lsb_release(args: list[str]) -> int:
    if "-cs" in args or "-sc" in args:
        out("noble\n")
    elif "-rs" in args or "-sr" in args:
        out("24.04\n")
    else:
        out("Distributor ID:\tUbuntu\nDescription:\tUbuntu 24.04.3 LTS\n")
        out("Release:\t24.04\nCodename:\tnoble\n")
    return 0


def _answer(result: dict[str, Any]) -> int:
    if "fail" in result:
        err(result["fail"].get("stderr", ""))
        return int(result["fail"].get("status", 1))
    out(result.get("stdout", ""))
    err(result.get("stderr", ""))
    return int(result.get("status", 1))


def main(argv: list[str]) -> int:
    tool, args = argv[0], argv[1:]
    if tool in ("journalctl", "df", "free") or (tool == "systemctl" and not _links(args)):
        # Answered by the simulator alone: the call is recorded and answered in one go.
        return _answer(rpc("call", [tool, *args]))
    begin = rpc("begin", [tool, *args])
    if "fail" in begin:
        return _answer(begin)
    if tool == "curl":
        from sim.vps_guest_curl import curl

        return curl(args)
    if tool == "openclaw":
        from sim.vps_guest_openclaw import openclaw

        return openclaw(args)
    from sim.vps_guest_packages import apt_get, node, npm

    handlers = {
        "sudo": sudo,
        "apt-get": apt_get,
        "node": node,
        "npm": npm,
        "npx": npm,
        "useradd": useradd,
        "loginctl": loginctl,
        "systemctl": systemctl,
        "lsb_release": lsb_release,
    }
    if tool in handlers:
        return handlers[tool](args)
    if tool == "reboot":
        err("reboot: use the Hetzner API to reboot a simulated server\n")
        return 1
    err(f"{tool}: not simulated\n")
    return 127
