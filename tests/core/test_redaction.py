"""Secrets never survive redaction, under the names they really have."""

from __future__ import annotations

import pytest

from core.redaction import redact


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("OPENCLAW_GATEWAY_PASSWORD=hunter2hunter2", "hunter2hunter2"),
        ("HCLOUD_TOKEN=abcdef123456", "abcdef123456"),
        ("password: s3cr3t", "s3cr3t"),
        ('{"api_key": "k-123"}', "k-123"),
        ("Authorization: Bearer abc.def.ghi", "abc.def.ghi"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----", "AAAA"),
        ("the bot token 123:XYZ appears raw", "123:XYZ"),
    ],
)
def test_secrets_are_redacted(text: str, leak: str) -> None:
    assert leak not in redact(text, secrets=["123:XYZ"])


def test_ordinary_text_is_kept() -> None:
    text = "install exited 0: gateway ready on 127.1.0.1:18789 (password set in .env)"
    assert redact(text) == text
