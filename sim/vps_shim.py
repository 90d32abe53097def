"""The simulated tools' entry points inside a VPS, host side.

Every shimmed tool (`/usr/bin/apt-get`, `/usr/bin/sudo`, ...) in the VPS's own /usr is
a one-line script, `#!/run/ocsim/shim TOOL`. `/run/ocsim/shim` is, when a C compiler
is at hand, the small C program below: it hands its argv, environment, umask, stdio
and working directory to the VPS's guest command server (`vps_guest_server.py`,
started at boot) and exits with the tool's status, about a millisecond per call. When
the server does not answer (not started yet, or gone) it runs the tool in a Python of
its own, as does the shell script that stands in for the C program when no compiler
is found: the same tools, only ~30 ms slower per call.

The program is compiled once per process into a private temporary directory.
"""

from __future__ import annotations

import atexit
import json
import logging
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

GUEST_MODULES = (
    "vps_guest.py",
    "vps_guest_curl.py",
    "vps_guest_openclaw.py",
    "vps_guest_packages.py",
    "vps_guest_call.py",
    "vps_guest_server.py",
)
GUEST_TOOLS = {
    "/usr/bin/sudo": "sudo",
    "/usr/bin/apt-get": "apt-get",
    "/usr/bin/apt": "apt-get",
    "/usr/bin/curl": "curl",
    "/usr/sbin/useradd": "useradd",
    "/usr/bin/loginctl": "loginctl",
    "/usr/bin/systemctl": "systemctl",
    "/usr/bin/journalctl": "journalctl",
    "/usr/bin/df": "df",
    "/usr/bin/free": "free",
    "/usr/bin/lsb_release": "lsb_release",
    "/usr/sbin/reboot": "reboot",
}
SHIM = "/run/ocsim/shim"
SERVER_COMMAND = (
    'exec "$(cat /run/ocsim/python)" -S -E -c "import sys; sys.path.insert(0, \'/run/ocsim/lib\');'
    ' from sim.vps_guest_server import main; main()"'
)

# argv: /run/ocsim/shim TOOL SCRIPT ARGS... (the kernel runs `#!/run/ocsim/shim TOOL`).
SHIM_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

extern char **environ;
static int conn = -1;

static void forward(int sig) {
    unsigned char number = (unsigned char)sig;
    ssize_t ignored = write(conn, &number, 1);
    (void)ignored;
}

static int fallback(int argc, char **argv) {
    char python[4096];
    int fd = open("/run/ocsim/python", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : read(fd, python, sizeof python - 1);
    if (n <= 0) {
        fprintf(stderr, "%s: the simulator's guest python is not configured\n", argv[1]);
        return 127;
    }
    python[n] = 0;
    python[strcspn(python, "\n")] = 0;
    char **args = calloc((size_t)argc + 4, sizeof *args);
    if (!args) return 127;
    int i = 0;
    args[i++] = python;
    args[i++] = "-S";
    args[i++] = "-E";
    args[i++] = "/run/ocsim/lib/run.py";
    args[i++] = argv[1];
    for (int j = 3; j < argc; j++) args[i++] = argv[j];
    args[i] = NULL;
    execv(python, args);
    fprintf(stderr, "%s: cannot run %s: %s\n", argv[1], python, strerror(errno));
    return 127;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: #!/run/ocsim/shim TOOL\n");
        return 2;
    }
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strcpy(addr.sun_path, "/run/ocsim-guest.sock");
    conn = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (conn < 0 || connect(conn, (struct sockaddr *)&addr, sizeof addr) < 0) {
        return fallback(argc, argv);
    }
    size_t length = 0;
    uint32_t nargs = (uint32_t)argc - 2, nenv = 0;
    length += strlen(argv[1]) + 1;
    for (int i = 3; i < argc; i++) length += strlen(argv[i]) + 1;
    for (char **e = environ; *e; e++, nenv++) length += strlen(*e) + 1;
    char *blob = malloc(length ? length : 1);
    if (!blob) return 127;
    char *at = blob;
    at = stpcpy(at, argv[1]) + 1;
    for (int i = 3; i < argc; i++) at = stpcpy(at, argv[i]) + 1;
    for (char **e = environ; *e; e++) at = stpcpy(at, *e) + 1;

    int fds[4], count = 0;
    uint32_t mask = 0;
    for (int fd = 0; fd < 3; fd++) {
        if (fcntl(fd, F_GETFD) >= 0) {
            fds[count++] = fd;
            mask |= 1u << fd;
        }
    }
    int cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (cwd >= 0) {
        fds[count++] = cwd;
        mask |= 1u << 3;
    }
    mode_t old = umask(0);
    umask(old);
    uint32_t header[6];
    memcpy(header, "OCS1", 4);
    header[1] = mask;
    header[2] = (uint32_t)old;
    header[3] = nargs;
    header[4] = nenv;
    header[5] = (uint32_t)length;

    struct iovec iov[2] = {{header, sizeof header}, {blob, length}};
    union {
        char buf[CMSG_SPACE(sizeof fds)];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof control);
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 1};
    if (count > 0) {
        msg.msg_control = control.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * count);
        struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(sizeof(int) * count);
        memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * count);
    }
    if (sendmsg(conn, &msg, MSG_NOSIGNAL) != (ssize_t)sizeof header) {
        fprintf(stderr, "%s: the simulator's guest server failed\n", argv[1]);
        return 127;
    }
    if (cwd >= 0) close(cwd);
    for (size_t sent = 0; sent < length;) {
        ssize_t n = send(conn, blob + sent, length - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            fprintf(stderr, "%s: the simulator's guest server failed\n", argv[1]);
            return 127;
        }
        sent += (size_t)n;
    }
    struct sigaction action = {.sa_handler = forward, .sa_flags = SA_RESTART};
    sigemptyset(&action.sa_mask);
    int forwarded[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGALRM};
    for (size_t i = 0; i < sizeof forwarded / sizeof *forwarded; i++) {
        sigaction(forwarded[i], &action, NULL);
    }
    int32_t status;
    size_t got = 0;
    while (got < sizeof status) {
        ssize_t n = read(conn, (char *)&status + got, sizeof status - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            fprintf(stderr, "%s: the simulator's guest server went away\n", argv[1]);
            return 255;
        }
        got += (size_t)n;
    }
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        signal(sig, SIG_DFL);
        raise(sig);
        return 128 + sig;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 255;
}
"""

# Without a C compiler: every call starts a Python of its own (nested interpreters:
# the kernel runs this script with the wrapper's path and its arguments).
SHIM_SH = """#!/bin/sh
tool=$1
shift 2
exec {python} -S -E /run/ocsim/lib/run.py "$tool" "$@"
"""

_lock = threading.Lock()
_built: list[Path | None] = []


def compiled_shim() -> Path | None:
    """The C shim, compiled on first use in this process; None without a C compiler."""
    with _lock:
        if not _built:
            _built.append(_compile())
        return _built[0]


def _compile() -> Path | None:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        log.warning("no C compiler: simulated tools start a Python per call (slower)")
        return None
    directory = Path(tempfile.mkdtemp(prefix="ocsim-shim-"))
    atexit.register(shutil.rmtree, directory, True)
    target = directory / "shim"
    for extra in (["-static"], []):  # static when libc.a is there: no loader at each call
        result = subprocess.run(  # noqa: S603 - the compiler found on PATH, our source
            [compiler, "-O2", "-o", str(target), *extra, "-x", "c", "-"],
            input=SHIM_C.encode(),
            capture_output=True,
            check=False,
        )
        if result.returncode == 0:
            return target
    log.warning("the C shim did not compile: %s", result.stderr.decode(errors="replace"))
    return None


def wrapper(tool: str) -> str:
    return f"#!{SHIM} {tool}\n"


def write_guest(guest: Path, python: str, shim: Path | None, identity: dict[str, Any]) -> None:
    """The guest's part of /run/ocsim: its modules, the shim, the VPS's identity."""
    lib = guest / "lib" / "sim"
    lib.mkdir(parents=True, exist_ok=True)
    (lib / "__init__.py").write_text("")
    here = Path(__file__).parent
    for name in GUEST_MODULES:
        shutil.copyfile(here / name, lib / name)
    (guest / "lib" / "run.py").write_text(
        "import sys\nsys.path.insert(0, '/run/ocsim/lib')\n"
        "from sim.vps_guest import main\nsys.exit(main(sys.argv[1:]))\n"
    )
    (guest / "python").write_text(python)
    target = guest / "shim"
    if shim is not None:
        shutil.copyfile(shim, target)
    else:
        target.write_text(SHIM_SH.format(python=python))
    target.chmod(0o755)
    (guest / "vps.json").write_text(json.dumps(identity))


def write_wrappers(path_of: Any) -> None:
    """The shims replace the host's tools of the same name in the VPS's own /usr (its
    overlay's upper layer), so even an absolute path hits a shim."""
    for vps_path, tool in GUEST_TOOLS.items():
        target: Path = path_of(vps_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(wrapper(tool))
        target.chmod(0o755)
