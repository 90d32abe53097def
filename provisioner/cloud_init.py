"""The cloud-init user data of a customer server: our SSH host key, our access key.

The host key is generated here, before the server exists, and handed to cloud-init,
so the first SSH connection can already verify the server (the key is pinned), rather
than trusting whatever answers at that address. Everything else the server needs is
done later by the install script over SSH, where each step's output is logged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import asyncssh

# Hetzner refuses user data above 32 KiB.
MAX_USER_DATA_BYTES = 32 * 1024


@dataclass(frozen=True)
class HostKey:
    """An ed25519 SSH host key: the private half goes to the server only, the public
    half (`ssh-ed25519 AAAA...`, no comment) is what the backend pins."""

    private_openssh: str
    public_openssh: str

    def __repr__(self) -> str:
        # The private key must not end up in a log line or a traceback.
        return f"HostKey(public_openssh={self.public_openssh!r})"


def _one_line_public(key: asyncssh.SSHKey) -> str:
    algorithm, data = key.export_public_key("openssh").decode().split()[:2]
    return f"{algorithm} {data}"


def new_host_key() -> HostKey:
    key = asyncssh.generate_private_key("ssh-ed25519")
    return HostKey(
        private_openssh=key.export_private_key("openssh").decode(),
        public_openssh=_one_line_public(key),
    )


def _quoted(value: str) -> str:
    # A JSON string is a valid YAML double-quoted scalar: no guessing about which
    # characters (`#`, `: `) a plain scalar would misread.
    return json.dumps(value)


def user_data(host_key: HostKey, authorized_key: str, ssh_port: int = 22) -> str:
    """A `#cloud-config` that installs `host_key` as the server's only SSH host key and
    lets `authorized_key` (the backend's) log in as root, by key only, on `ssh_port`."""
    public = " ".join(host_key.public_openssh.split()[:2])
    authorized = " ".join(authorized_key.split())
    if not public.startswith("ssh-ed25519 "):
        raise ValueError("the host key must be an ssh-ed25519 key")
    if not authorized or "\n" in authorized_key.strip():
        raise ValueError("authorized_key must be one OpenSSH public key line")
    private_lines = host_key.private_openssh.strip("\n").splitlines()
    private_block = "".join(f"    {line}\n" for line in private_lines)
    document = (
        "#cloud-config\n"
        # Delete the image's host keys and generate none: ours is the only one, so the
        # pinned key is the one every connection sees.
        "ssh_deletekeys: true\n"
        "ssh_genkeytypes: []\n"
        "ssh_keys:\n"
        "  ed25519_private: |\n"
        f"{private_block}"
        f"  ed25519_public: {_quoted(public)}\n"
        # Hetzner's images log in as root; keys only, never a password.
        "disable_root: false\n"
        "ssh_pwauth: false\n"
        "ssh_authorized_keys:\n"
        f"  - {_quoted(authorized)}\n"
    )
    if ssh_port != 22:
        # The firewall opens only SSH_PORT: sshd must listen there from the first boot.
        # Ubuntu 24.04 starts sshd from ssh.socket, whose port a generator reads from
        # sshd_config at daemon-reload.
        document += (
            "write_files:\n"
            "  - path: /etc/ssh/sshd_config.d/00-openclaw-port.conf\n"
            '    permissions: "0644"\n'
            f"    content: |\n      Port {int(ssh_port)}\n"
            "runcmd:\n"
            "  - [systemctl, daemon-reload]\n"
            "  - [systemctl, restart, ssh.socket]\n"
            "  - [systemctl, restart, ssh]\n"
        )
    if len(document.encode()) > MAX_USER_DATA_BYTES:
        raise ValueError("cloud-init user data exceeds Hetzner's 32 KiB limit")
    return document
