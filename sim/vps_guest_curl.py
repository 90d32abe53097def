"""Guest `curl` (stdlib only; see `vps_guest.py`).

The simulated VPS has no internet: the NodeSource setup script and the OpenClaw
installer are answered from here, `localhost`/`127.0.0.1`/the VPS's own address go
to the VPS's own address (the gateway), sent from that address so the gateway
treats them as local traffic, and any other host fails as unresolvable (exit 6).
"""

from __future__ import annotations

import http.client
import sys
import urllib.parse

from sim.vps_guest import OPENCLAW_LATEST, err, identity

NODESOURCE_SETUP = """#!/bin/bash
# NodeSource 24.x repository setup (simulated)
set -e
echo "Installing pre-requisites"
mkdir -p /etc/apt/keyrings /etc/apt/sources.list.d
echo "simulated key" > /etc/apt/keyrings/nodesource.gpg
echo "deb [signed-by=/etc/apt/keyrings/nodesource.gpg]" \
  "https://deb.nodesource.com/node_24.x nodistro main" > /etc/apt/sources.list.d/nodesource.list
apt-get update
echo "Repository configured successfully."
"""

OPENCLAW_INSTALLER = (
    "#!/bin/bash\n"
    "# OpenClaw installer (simulated): installs the npm package globally\n"
    "set -e\n"
    f'VERSION="${{OPENCLAW_VERSION:-{OPENCLAW_LATEST}}}"\n'
    'npm install -g --allow-scripts=openclaw "openclaw@${VERSION}"\n'
)

WITH_VALUE = {
    "-o",
    "--output",
    "-w",
    "--write-out",
    "-H",
    "--header",
    "-X",
    "--request",
    "-d",
    "--data",
    "--data-raw",
    "--data-binary",
    "-m",
    "--max-time",
    "--connect-timeout",
    "--retry",
    "--retry-delay",
    "-u",
    "--user",
    "-A",
    "--user-agent",
    "-e",
    "--referer",
}


def curl(args: list[str]) -> int:
    opts: dict[str, list[str]] = {}
    flags: set[str] = set()
    urls: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in WITH_VALUE:
            opts.setdefault(arg, []).append(args[i + 1] if i + 1 < len(args) else "")
            i += 2
            continue
        if arg.startswith("--") and "=" in arg:
            key, value = arg.split("=", 1)
            opts.setdefault(key, []).append(value)
        elif arg.startswith("--"):
            flags.add(arg)
        elif arg.startswith("-") and len(arg) > 1:
            for j, ch in enumerate(arg[1:]):
                if "-" + ch in WITH_VALUE:  # e.g. -sSo FILE or -m5
                    rest = arg[j + 2 :]
                    if rest:
                        opts.setdefault("-" + ch, []).append(rest)
                    else:
                        opts.setdefault("-" + ch, []).append(
                            args[i + 1] if i + 1 < len(args) else ""
                        )
                        i += 1
                    break
                flags.add("-" + ch)
        else:
            urls.append(arg)
        i += 1

    def has(*names: str) -> bool:
        return any(n in flags for n in names)

    def opt(*names: str) -> str | None:
        for n in names:
            if n in opts:
                return opts[n][-1]
        return None

    silent, show_error, fail = has("-s", "--silent"), has("-S", "--show-error"), has("-f", "--fail")

    def error(code: int, message: str) -> int:
        if not silent or show_error:
            err(f"curl: ({code}) {message}\n")
        return code

    if not urls:
        return error(2, "no URL specified")
    url = urls[0]
    parsed = urllib.parse.urlsplit(url if "://" in url else "http://" + url)
    host = parsed.hostname or ""
    status, body = 0, b""
    if host == "deb.nodesource.com" and parsed.path.startswith("/setup_24"):
        status, body = 200, NODESOURCE_SETUP.encode()
    elif host in ("openclaw.ai", "www.openclaw.ai", "get.openclaw.ai") and "install" in parsed.path:
        status, body = 200, OPENCLAW_INSTALLER.encode()
    elif host in ("localhost", "127.0.0.1", "::1", identity()["ip"]):
        try:
            status, head, body = _local(parsed, opts, flags, opt)
        except ConnectionRefusedError:
            return error(
                7, f"Failed to connect to {host} port {parsed.port or 80}: Connection refused"
            )
        except TimeoutError:
            return error(28, "Operation timed out")
        except (ConnectionResetError, http.client.RemoteDisconnected, http.client.BadStatusLine):
            return error(56, "Recv failure: Connection reset by peer")
        if has("-i", "--include", "-I", "--head"):
            body = head + body
    else:
        return error(6, f"Could not resolve host: {host}")
    if fail and status >= 400:
        return error(22, f"The requested URL returned error: {status}")
    target = opt("-o", "--output")
    if target and target != "-":
        with open(target, "wb") as f:
            f.write(body)
    else:
        sys.stdout.buffer.write(body)
    if (fmt := opt("-w", "--write-out")) is not None:
        sys.stdout.write(fmt.replace("%{http_code}", f"{status:03d}").replace("\\n", "\n"))
    sys.stdout.flush()
    return 0


def _local(
    parsed: urllib.parse.SplitResult, opts: dict[str, list[str]], flags: set[str], opt: object
) -> tuple[int, bytes, bytes]:
    me = identity()
    timeout = float(opts.get("-m", opts.get("--max-time", ["30"]))[-1] or 30)
    conn = http.client.HTTPConnection(
        me["ip"], parsed.port or 80, timeout=timeout, source_address=(me["ip"], 0)
    )
    headers = {"User-Agent": "curl/8.5.0", "Accept": "*/*"}
    for header in opts.get("-H", []) + opts.get("--header", []):
        name, _, value = header.partition(":")
        headers[name.strip()] = value.strip()
    data = None
    for key in ("-d", "--data", "--data-raw", "--data-binary"):
        if key in opts:
            data = opts[key][-1].encode()
    method = (opts.get("-X") or opts.get("--request") or [""])[-1]
    if not method:
        method = "HEAD" if ("-I" in flags or "--head" in flags) else ("POST" if data else "GET")
    path = parsed.path or "/"
    if parsed.query:
        path += "?" + parsed.query
    conn.request(method, path, body=data, headers=headers)
    response = conn.getresponse()
    body = response.read()
    head = f"HTTP/1.1 {response.status} {response.reason}\r\n".encode()
    head += b"".join(f"{k}: {v}\r\n".encode() for k, v in response.getheaders()) + b"\r\n"
    conn.close()
    return response.status, head, body
