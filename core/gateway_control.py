"""What the bot and the login page may ask of a customer's gateway: declared here,
implemented by `provisioner/` (over SSH), wired by `app/`."""

from __future__ import annotations

from typing import Protocol


class GatewayUnavailable(Exception):
    """The server could not be reached or did not answer; the message is for people."""


class GatewayControl(Protocol):
    async def owner_link(self, instance_id: str) -> str:
        """A fresh one-time owner login link (`…#bootstrapToken=…`), with the host
        rewritten to the instance's public address."""
        ...

    async def gateway_password(self, instance_id: str) -> str:
        """The gateway password, read from the server at this moment (never stored)."""
        ...
