"""Identifiers: the one rule for tenant and subject ids on every path (Kafka, HTTP, CLI), and image ids.

Every id is checked here before it reaches a store. The alphabet has no quote, backslash or whitespace,
which is what makes it safe to put an id into a Milvus filter expression as a literal (milvus-lite has no
filter templates). Tenants also name Kafka topics (``twinstream.images.<tenant>``), users and consumer
group prefixes, so their alphabet has no dot: one tenant's name is never a prefix of another's. Patterns
are applied with ``fullmatch``: a trailing newline is refused (``$`` would match before it).
"""

from __future__ import annotations

import hashlib
import re

from twinstream.contracts import InputError, RejectReason

#: Subjects: 1-128 of letters, digits and ``_ . : @ + -``, starting with a letter, digit or ``_``.
SUBJECT_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_.:@+\-]{0,127}"
#: Tenants: 1-64 of letters, digits, ``_`` and ``-``, starting with a letter or digit. They also name
#: Kafka topics, SCRAM users and consumer-group prefixes (`twinstream.tenant_topics`): without dots, no
#: tenant's topic, user or group prefix starts with another tenant's.
TENANT_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_\-]{0,63}"
_SUBJECT = re.compile(SUBJECT_PATTERN)
_TENANT = re.compile(TENANT_PATTERN)
_RULES = {"tenant": (_TENANT, "1-64 of letters, digits, _ -"), "subject": (_SUBJECT, "1-128 of letters, "
          "digits, _ . : @ + -")}  # fmt: skip


def check_name(kind: str, value: str) -> str:
    """Return ``value`` if it is a valid id of ``kind`` (``tenant`` or ``subject``).

    Raises:
        InputError: ``missing-subject`` for an empty subject, else ``bad-header`` for a malformed id.
    """
    if not value and kind == "subject":
        raise InputError(RejectReason.MISSING_SUBJECT, "a subject is required for this operation")
    pattern, words = _RULES[kind]
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InputError(RejectReason.BAD_HEADER, f"{kind} {str(value)[:40]!r} must be {words}")
    return value


def is_valid(kind: str, value: str) -> bool:
    """Whether ``value`` is a valid id of ``kind`` (no exception)."""
    return bool(_RULES[kind][0].fullmatch(value))


def image_id(tenant: str, subject: str, image_digest: str) -> str:
    """The deterministic primary key of one enrolled image: a replay or a repeat upserts the same row."""
    joined = "\x1f".join((tenant, subject, image_digest)).encode()
    return hashlib.sha256(joined).hexdigest()[:32]
