"""The install script for a customer server, and the gateway password it sets.

`install.sh` (shipped as package data) is a template whose few values are filled in
here and checked first, since they end up inside a root shell script. The password is
not among them: it goes to the server on stdin (`SshRunner.run(secrets={"PW": ...})`)
and is stored nowhere else; the backend keeps a salted hash at most.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
import secrets
import string
from importlib import resources

PASSWORD_LENGTH = 32
# URL-safe and shell-safe: no quotes, no spaces, nothing a `.env` parser would mangle.
PASSWORD_ALPHABET = string.ascii_letters + string.digits + "-_"
_VERSION = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+(?:-[0-9A-Za-z.]+)?")

# The password is ~190 random bits, so no cost factor is what protects it; scrypt with
# a salt just makes the stored form useless for anything but checking a guess.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**15, 8, 1
_SCRYPT_MAXMEM = 64 * 1024 * 1024


def new_gateway_password() -> str:
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=32
    )


def password_hash(password: str) -> str:
    """`scrypt$n=..,r=..,p=..$salt$hash`: enough to check a password, never to recover it."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    params = f"n={_SCRYPT_N},r={_SCRYPT_R},p={_SCRYPT_P}"
    return f"scrypt${params}${_b64(salt)}${_b64(digest)}"


def password_matches(password: str, stored: str) -> bool:
    try:
        scheme, params, salt, digest = stored.split("$")
        values = dict(part.split("=", 1) for part in params.split(","))
        n, r, p = int(values["n"]), int(values["r"]), int(values["p"])
    except (ValueError, KeyError):
        return False
    if scheme != "scrypt":
        return False
    return hmac.compare_digest(_scrypt(password, _unb64(salt), n, r, p), _unb64(digest))


def template() -> str:
    return resources.files("provisioner").joinpath("install.sh").read_text(encoding="utf-8")


def install_script(
    *,
    openclaw_version: str,
    gateway_port: int,
    public_ip: str,
    reboot_hour: int,
    reboot_minute: int = 0,
    ready_timeout_s: int = 120,
) -> str:
    """The install script for one server; run it with `bash -s` and `PW` on stdin.

    `reboot_hour` (UTC) is when unattended upgrades may reboot the server, staggered
    per instance by the caller. `ready_timeout_s` bounds the wait for `/readyz` (the
    unit's TimeoutStartSec is 90 s)."""
    if not _VERSION.fullmatch(openclaw_version):
        raise ValueError(f"not an OpenClaw version: {openclaw_version!r}")
    if not 1 <= gateway_port <= 65535:
        raise ValueError(f"not a TCP port: {gateway_port}")
    address = ipaddress.ip_address(public_ip)  # raises ValueError on anything else
    if address.version != 4:
        raise ValueError("the gateway's origin is an IPv4 address")
    if not (0 <= reboot_hour <= 23 and 0 <= reboot_minute <= 59):
        raise ValueError(f"not a time of day: {reboot_hour}:{reboot_minute}")
    if not 1 <= ready_timeout_s <= 3600:
        raise ValueError(f"unreasonable readiness timeout: {ready_timeout_s}")
    values = {
        "OPENCLAW_VERSION": openclaw_version,
        "GATEWAY_PORT": str(gateway_port),
        "PUBLIC_IP": str(address),
        "REBOOT_TIME": f"{reboot_hour:02d}:{reboot_minute:02d}",
        "READY_TIMEOUT_S": str(ready_timeout_s),
    }
    script = template()
    for name, value in values.items():
        placeholder = f"@{name}@"
        if placeholder not in script:
            raise RuntimeError(f"install.sh lacks {placeholder}")
        script = script.replace(placeholder, value)
    if leftover := re.search(r"@[A-Z_]+@", script):
        raise RuntimeError(f"install.sh has an unfilled {leftover.group()}")
    return script
