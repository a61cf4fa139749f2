"""Proof of an erasure, store by store: what ``twinstream erase --verify`` prints and exits on.

Each check looks at the store itself, not at the index the erasure used: every version's collection is
counted, the embedding cache and the tenant's stored results are scanned, and the enrolment log is read
from its start. Scans cost one pass over the cache's keys, the tenant's results and the log: fine for an
erasure, not for a hot path.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.gallery.milvus_gallery import MilvusGallery
from services.gallery.mirror import RedisGenerations
from services.lifecycle.clients import LifecycleClients
from services.lifecycle.enrolment_log import records_of
from services.lifecycle.erasure import ErasureReport, logged_images, target_collections
from services.lifecycle.ledger import RedisErasureLedger
from services.results.store import EmbeddingCache, SubjectIndex, scan_results_naming


@dataclass(frozen=True, slots=True)
class Check:
    """One store's verdict."""

    store: str
    ok: bool
    detail: str


def verify_erasure(clients: LifecycleClients, report: ErasureReport) -> list[Check]:
    """Check that nothing of the report's subject is left anywhere; one `Check` per store."""
    tenant, subject = report.tenant, report.subject
    return [
        *_collections(clients, report),
        *_generations(clients, report),
        _cache(clients, report),
        _results(clients, tenant, subject),
        _log(clients, report),
        _ledger(clients, report),
    ]


def _collections(clients: LifecycleClients, report: ErasureReport) -> list[Check]:
    key = (report.tenant, report.subject)
    checks = []
    for name in target_collections(clients):
        left = MilvusGallery(clients.milvus, name).count([key])
        checks.append(Check(f"milvus {name}", left == 0, f"{left} vector(s) of the subject"))
    return checks


def _generations(clients: LifecycleClients, report: ErasureReport) -> list[Check]:
    checks = []
    for name, (before, _after) in sorted(report.generations.items()):
        now = RedisGenerations(clients.redis, name).current([report.tenant])[report.tenant]
        checks.append(
            Check(f"mirror generation {name}", now > before, f"{before} before the erasure, {now} now")
        )
    return checks


def _cache(clients: LifecycleClients, report: ErasureReport) -> Check:
    index = SubjectIndex(clients.redis)
    digests = set(report.digests) | index.digests(report.tenant, report.subject)
    left = EmbeddingCache(clients.redis, clients.settings.redis.cache_ttl_s).scan_digests(digests)
    indexed = index.digests(report.tenant, report.subject)
    detail = f"{len(left)} cached vector(s) of {len(digests)} image digest(s); {len(indexed)} still indexed"
    return Check("embedding cache", not left and not indexed, detail)


def _results(clients: LifecycleClients, tenant: str, subject: str) -> Check:
    left = scan_results_naming(clients.redis, tenant, subject)
    indexed = SubjectIndex(clients.redis).result_ids(tenant, subject)
    detail = f"{len(left)} stored result(s) name the subject; {len(indexed)} still indexed"
    return Check("results", not left and not indexed, detail)


def _log(clients: LifecycleClients, report: ErasureReport) -> Check:
    _, live = logged_images(clients.reader, report.tenant, report.subject)
    remaining = records_of(clients.reader, report.image_ids)
    detail = (
        f"{len(live)} live image(s) of the subject; {remaining} record(s) of its "
        f"{len(report.image_ids)} image id(s) await compaction"
        if remaining
        else f"{len(live)} live image(s) of the subject; no record of its images left"
    )
    return Check("enrolment log", not live, detail)


def _ledger(clients: LifecycleClients, report: ErasureReport) -> Check:
    ledger = RedisErasureLedger.from_settings(clients.redis, clients.settings)
    at = ledger.erased_before([(report.tenant, report.subject)]).get((report.tenant, report.subject))
    ok = at is not None and at >= report.erased_at_ms
    detail = f"enrolments recorded at or before {at} ms are refused" if ok else "no ledger entry"
    return Check("erasure ledger", ok, detail)
