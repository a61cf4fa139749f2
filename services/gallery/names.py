"""Names in the gallery: collection per model version, validated tenant/subject ids, image ids, filters.

pymilvus 3 / milvus-lite 3 do not support filter templates (``filter_params``), so values are put into
filter expressions as string literals. That is only safe because every tenant and subject is validated
here first: the allowed alphabet has no quote, backslash or whitespace.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from twinstream.contracts import InputError, RejectReason

#: Tenants and subjects: letters, digits and ``_ . : @ + -``; 1-128 characters.
_NAME = re.compile(r"^[\w.:@+\-]{1,128}$", re.ASCII)
_COLLECTION_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


def collection_name(prefix: str, model_version: str) -> str:
    """The Milvus collection of one model version (Milvus allows letters, digits and ``_`` only)."""
    name = _COLLECTION_UNSAFE.sub("_", f"{prefix}_{model_version}")
    return name if name[0].isalpha() or name[0] == "_" else f"c_{name}"


def check_name(kind: str, value: str) -> str:
    """Return ``value`` if it is a valid tenant or subject id.

    Raises:
        InputError: ``missing-subject`` for an empty subject, else ``bad-header`` for a malformed id.
    """
    if not value and kind == "subject":
        raise InputError(RejectReason.MISSING_SUBJECT, "a subject is required for this operation")
    if not _NAME.fullmatch(value):
        raise InputError(
            RejectReason.BAD_HEADER, f"{kind} {value[:40]!r} must be 1-128 of letters, digits, _ . : @ + -"
        )
    return value


def image_id(tenant: str, subject: str, image_digest: str) -> str:
    """The deterministic primary key of one enrolled image: a replay or a repeat upserts the same row."""
    joined = "\x1f".join((tenant, subject, image_digest)).encode()
    return hashlib.sha256(joined).hexdigest()[:32]


def literal(value: str) -> str:
    """A Milvus string literal for a value already accepted by `check_name` (or a hex id)."""
    if not _NAME.fullmatch(value):
        raise ValueError(f"refusing to quote unvalidated value {value!r}")
    return f'"{value}"'


def subjects_filter(keys: Iterable[tuple[str, str]]) -> str:
    """A filter matching any of the (tenant, subject) pairs; the tenant is always part of each clause."""
    by_tenant: dict[str, set[str]] = {}
    for tenant, subject in keys:
        by_tenant.setdefault(tenant, set()).add(subject)
    clauses = [
        f"(tenant == {literal(tenant)} and subject in [{', '.join(literal(s) for s in sorted(subjects))}])"
        for tenant, subjects in sorted(by_tenant.items())
    ]
    if not clauses:
        raise ValueError("subjects_filter needs at least one (tenant, subject) pair")
    return " or ".join(clauses)


def ids_filter(ids: Iterable[str]) -> str:
    """A filter matching primary keys."""
    return f"id in [{', '.join(literal(i) for i in ids)}]"
