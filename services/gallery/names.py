"""Names in Milvus: the collection of a model version, and filter expressions over validated ids.

pymilvus 3 / milvus-lite 3 do not support filter templates (``filter_params``), so values are put into
filter expressions as string literals. That is only safe because every tenant and subject was validated
by `twinstream.names` first (its alphabet has no quote, backslash or whitespace); `literal` checks again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: What `literal` quotes: validated ids (`twinstream.names`) and hex image ids.
_QUOTABLE = re.compile(r"[A-Za-z0-9_.:@+\-]{1,128}")
_COLLECTION_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


def collection_name(prefix: str, model_version: str) -> str:
    """The Milvus collection of one model version (Milvus allows letters, digits and ``_`` only)."""
    name = _COLLECTION_UNSAFE.sub("_", f"{prefix}_{model_version}")
    return name if name[0].isalpha() or name[0] == "_" else f"c_{name}"


def literal(value: str) -> str:
    """A Milvus string literal for a value already accepted by `twinstream.names.check_name` (or a hex id)."""
    if not _QUOTABLE.fullmatch(value):
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
