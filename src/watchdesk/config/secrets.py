"""Secret references: `env:NAME` (the environment) and `credential:NAME`
(a file in systemd's $CREDENTIALS_DIRECTORY). Values never appear in messages."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import SecretError

_REF = re.compile(r"^(env|credential):([A-Za-z_][A-Za-z0-9_.-]*)$")

__all__ = ["SecretError", "is_reference", "resolve", "redact"]


def is_reference(value: str) -> bool:
    return bool(_REF.match(value))


def resolve(ref: str) -> str:
    """The secret's value. Raises SecretError naming the reference, never the value."""
    m = _REF.match(ref)
    if not m:
        raise SecretError("not a secret reference (write 'env:NAME' or 'credential:NAME')")
    kind, name = m.groups()
    if kind == "env":
        value = os.environ.get(name)
        if not value:
            raise SecretError(f"environment variable {name} is not set")
        return value
    folder = os.environ.get("CREDENTIALS_DIRECTORY")
    if not folder:
        raise SecretError(f"credential {name}: $CREDENTIALS_DIRECTORY is not set (systemd LoadCredential=)")
    try:
        return (Path(folder) / name).read_text(encoding="utf-8").strip()
    except OSError:
        raise SecretError(f"credential {name} is not readable in $CREDENTIALS_DIRECTORY") from None


def redact(text: str, *values: str) -> str:
    """Replace every occurrence of each secret value in text."""
    for value in values:
        if value:
            text = text.replace(value, "[redacted]")
    return text
