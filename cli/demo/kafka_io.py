"""The demo's Kafka traffic: wait for the ingest group, publish cases with the header contract, read answers.

The demo plays any producer and any results reader would: a plain KafkaProducer with headers (``op``,
``tenant``, ``request-id``, ``subject``, ``faces``), and a consumer of the results topic.
"""

from __future__ import annotations

import time

from cli.demo.cases import DemoCase, Observed
from twinstream.config import Settings
from twinstream.contracts import Op


def wait_for_workers(settings: Settings, workers: int, timeout_s: float = 180.0) -> None:
    """Block until the ingest group has ``workers`` members holding every partition."""
    from services.ingest.clients import build_admin
    from services.ingest.status import group_status
    from services.kafka_clients import new_consumer

    admin = build_admin(settings.kafka)
    consumer = new_consumer(settings.kafka, client_id="twinstream-demo")
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            status = group_status(admin, consumer, settings.ingest.group_id, settings.kafka.images_topic)
            owned = sum(len(m.partitions) for m in status.members)
            if len(status.members) >= workers and owned >= settings.kafka.partitions:
                return
            time.sleep(1.0)
    finally:
        admin.close()
        consumer.close()
    raise TimeoutError(f"ingest workers did not join group {settings.ingest.group_id} in {timeout_s:.0f}s")


def publish_cases(
    settings: Settings,
    cases: list[DemoCase],
    tenant: str,
    poison: list[tuple[bytes, dict[str, str], str]],
    run_id: str = "demo",
) -> list[DemoCase]:
    """Publish ``cases``, then ``poison`` (payload, headers, expected reason); returns the poison's cases."""
    from services.kafka_clients import new_producer

    producer = new_producer(
        settings.kafka,
        client_id="twinstream-demo",
        max_request_size=settings.kafka.max_message_bytes,
        linger_ms=5,
    )
    futures = []
    for case in cases:
        headers = [
            ("op", case.op.value.encode()),
            ("tenant", tenant.encode()),
            ("request-id", case.request_id.encode()),
        ]
        if case.claimed_subject:
            headers.append(("subject", case.claimed_subject.encode()))
        if case.all_faces:
            headers.append(("faces", b"all"))
        assert case.image_path is not None
        futures.append(
            producer.send(settings.kafka.images_topic, value=case.image_path.read_bytes(), headers=headers)
        )
    poison_cases = []
    for n, (payload, extra, reason) in enumerate(poison):
        rid = f"{run_id}-poison-{n}"
        headers = [("tenant", tenant.encode()), ("request-id", rid.encode())]
        headers += [(k, v.encode()) for k, v in extra.items()]
        futures.append(producer.send(settings.kafka.images_topic, value=payload, headers=headers))
        op = Op(extra["op"]) if extra["op"] in {o.value for o in Op} else Op.IDENTIFY
        poison_cases.append(DemoCase(rid, op, None, "", poison=str(reason)))
    for future in futures:
        future.get(timeout=60)
    producer.close()
    return poison_cases


def collect(settings: Settings, wanted: set[str], timeout_s: float) -> dict[str, Observed]:
    """Read the results topic until every request id has an answer (or the timeout passes)."""
    import threading

    from services.ingest.results_reader import build_reader, read_results

    stop = threading.Event()
    timer = threading.Timer(timeout_s, stop.set)
    timer.start()
    seen: dict[str, Observed] = {}
    consumer = build_reader(settings.kafka)
    try:
        for record in read_results(
            consumer, settings.kafka.results_topic, follow=True, request_ids=wanted, stop=stop
        ):
            r = record.result
            produced = r.source.timestamp_ms if r.source else record.timestamp_ms
            seen.setdefault(r.request_id, Observed(r, produced, record.timestamp_ms))
            if len(seen) >= len(wanted):
                break
    finally:
        timer.cancel()
        consumer.close()
    return seen
