"""Keeping secret settings out of output: the mask, URL passwords, and what a settings error may echo.

Secrets are API keys, tokens, passwords and the password part of a URL (``redis://:pw@host``). They are
written in clear only into a child process's settings file (`twinstream.config.write_settings_file`);
`twinstream settings`, reprs, logs and error messages show `MASK` instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

#: What a secret looks like wherever it is shown (pydantic's ``SecretStr`` prints the same).
MASK = "**********"
#: Words in a setting's name that make its value a secret (``KAFKA__SASL_PASSWORD``, ``SERVE__API_KEYS``).
SECRET_WORDS = ("PASSWORD", "TOKEN", "SECRET", "KEY")
#: ``scheme://user:password@`` — the password is group 2.
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*):([^@/\s]+)@")


def redact_url(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@host`` in it masked."""
    return _URL_PASSWORD.sub(lambda m: f"{m.group(1)}:{MASK}@", text)


def mask_keys(keys: Mapping[str, str]) -> dict[str, str]:
    """API keys → tenants with each key masked (numbered, so two keys of one tenant stay two)."""
    return {f"{MASK}{n}": tenant for n, tenant in enumerate(keys.values(), 1)}


def is_masked(value: str) -> bool:
    """Whether ``value`` is, or carries, a masked secret (a redacted dump fed back as settings)."""
    return value.startswith(MASK) or f":{MASK}@" in value


def variable_name(loc: Sequence[object]) -> tuple[str, bool]:
    """The ``TWINSTREAM_…`` variable of an error location, and whether it names a secret.

    The location stops at the first secret part: below ``serve.api_keys`` comes the key itself.
    """
    parts: list[str] = []
    for part in loc:
        parts.append(str(part).upper())
        if any(word in parts[-1] for word in SECRET_WORDS):
            return "TWINSTREAM_" + "__".join(parts), True
    return "TWINSTREAM_" + "__".join(parts), False


def shown_input(loc: Sequence[object], value: object, error_type: str) -> str:
    """The rejected value for a settings error message, or nothing where it is or may hold a secret.

    Never shown: a secret setting's value, a whole group (``TWINSTREAM_MILVUS='{…}'`` may hold the
    token), and the value of an unknown setting (a misspelt ``…__TOKN`` is still a token).
    """
    _, secret = variable_name(loc)
    if secret or error_type == "extra_forbidden" or len(loc) < 2:
        return ""
    if isinstance(value, bool | int | float):
        return f" (got {value!r})"
    if isinstance(value, str):
        return f" (got {redact_url(value)[:80]!r})"
    return ""
