"""The local stack: each part really works, `up` is idempotent, `down` leaves nothing, failures name logs."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import numpy as np
import psutil
import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from cli.stack import Stack, StackError, State, free_port
from cli.stack.kafka_admin import ensure_topics
from twinstream.config import Settings, load_settings

pytestmark = pytest.mark.integration


def test_kafka_carries_a_200kb_message_with_headers(
    kafka_bootstrap: str, stack_settings: Settings, unique_name: str
):
    ensure_topics(stack_settings, {unique_name: 1})
    payload = np.random.default_rng(0).bytes(200 * 1024)
    headers = [("op", b"enroll"), ("subject", "zoë".encode())]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, max_request_size=1_048_576)
    meta = producer.send(unique_name, value=payload, headers=headers).get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    tp = TopicPartition(unique_name, meta.partition)
    consumer.assign([tp])
    consumer.seek(tp, meta.offset)
    records = [r for batch in consumer.poll(timeout_ms=10_000).values() for r in batch]
    consumer.close()
    assert records[0].value == payload
    assert records[0].headers == headers


def test_stack_creates_the_design_topics_with_configured_partitions(
    kafka_bootstrap: str, stack_settings: Settings
):
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap)
    try:
        for topic in ("twinstream.images", "twinstream.results", "twinstream.dlq", "twinstream.enrolments"):
            assert consumer.partitions_for_topic(topic) == set(range(stack_settings.kafka.partitions))
    finally:
        consumer.close()


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat (Debian package) is not installed")
def test_a_foreign_client_produces_and_consumes_on_the_images_topic(kafka_bootstrap: str, tmp_path: Path):
    image = tmp_path / "img.bin"
    marker = uuid.uuid4().hex.encode()
    image.write_bytes(marker)
    subprocess.run(
        [
            "kcat",
            "-P",
            "-b",
            kafka_bootstrap,
            "-t",
            "twinstream.images",
            "-p",
            "3",
            "-H",
            "op=verify",
            str(image),
        ],
        check=True,
        timeout=30,
    )
    out = subprocess.run(
        [
            "kcat",
            "-C",
            "-b",
            kafka_bootstrap,
            "-t",
            "twinstream.images",
            "-p",
            "3",
            "-o",
            "-1",
            "-e",
            "-f",
            "%h|%s\n",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    ).stdout
    assert b"op=verify|" + marker in out


def test_redis_answers_set_and_get(redis_url: str, unique_name: str):
    client = redis.Redis.from_url(redis_url)
    client.set(unique_name, b"\x00value", ex=60)
    assert client.get(unique_name) == b"\x00value"
    client.close()


def test_milvus_server_inserts_and_searches(milvus_uri: str, unique_name: str):
    from services.gallery.client import connect

    client = connect(milvus_uri)
    client.create_collection(unique_name, dimension=8, metric_type="COSINE")
    vectors = np.eye(8, dtype=np.float32)
    client.insert(unique_name, [{"id": i, "vector": v.tolist()} for i, v in enumerate(vectors)])
    client.flush(unique_name)
    hits = client.search(unique_name, data=[vectors[5].tolist()], limit=1)
    client.drop_collection(unique_name)
    client.close()
    assert hits[0][0]["id"] == 5


def test_ray_head_runs_a_task(ray_address: str):
    import ray

    ray.init(address=ray_address, ignore_reinit_error=True, log_to_driver=False)
    try:

        @ray.remote
        def square(x: int) -> int:
            return x * x

        assert ray.get([square.remote(i) for i in range(4)]) == [0, 1, 4, 9]
    finally:
        ray.shutdown()


def test_prometheus_is_ready_and_scrapes_itself(prometheus_url: str):
    import httpx

    assert httpx.get(f"{prometheus_url}/-/ready", timeout=5).status_code == 200
    query = f"{prometheus_url}/api/v1/query"
    deadline = time.monotonic() + 30
    result: list = []
    while not result and time.monotonic() < deadline:  # the first scrape lands within one interval
        result = httpx.get(query, params={"query": 'up{job="prometheus"}'}, timeout=5).json()["data"][
            "result"
        ]
        time.sleep(1)
    assert result and result[0]["value"][1] == "1"


def test_up_twice_is_harmless(test_stack: Stack, redis_url: str):
    before = test_stack.part("redis").proc.record()
    (status,) = test_stack.up(["redis"])
    assert status.state is State.RUNNING
    assert test_stack.part("redis").proc.record() == before


def _mini_settings() -> Settings:
    redis_port, milvus_port = free_port(), free_port()
    return load_settings(
        redis={"port": redis_port, "url": f"redis://127.0.0.1:{redis_port}/0"},
        milvus={"port": milvus_port, "uri": f"http://127.0.0.1:{milvus_port}"},
    )


def test_down_stops_what_it_started_and_nothing_else(tmp_path: Path):
    bystander = subprocess.Popen(["sleep", "60"])
    stack = Stack(_mini_settings(), tmp_path)
    statuses = stack.up(["redis", "milvus"])
    pids = [s.pid for s in statuses]
    assert all(s.state is State.STARTED for s in statuses)
    assert sorted(stack.down()) == ["milvus", "redis"]
    assert not any(
        pid and psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in pids
    )
    assert [s.state for s in stack.status(["redis", "milvus"])] == [State.STOPPED, State.STOPPED]
    assert bystander.poll() is None
    bystander.kill()


def test_a_part_that_cannot_start_names_its_log(tmp_path: Path):
    settings = _mini_settings()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", settings.redis.port))
        squatter.listen()
        stack = Stack(settings, tmp_path)
        stack.parts["redis"].start_timeout_s = 5
        with pytest.raises(StackError, match=r"redis\.log"):
            stack.up(["redis"])
    assert not stack.part("redis").proc.alive()


def test_a_running_part_that_stops_answering_is_replaced_not_duplicated(tmp_path: Path):
    import os
    import signal

    stack = Stack(_mini_settings(), tmp_path)
    (first,) = stack.up(["redis"])
    assert first.pid is not None
    os.kill(first.pid, signal.SIGSTOP)  # alive, but answers nothing
    stack.parts["redis"].start_timeout_s = 3
    try:
        (second,) = stack.up(["redis"])
        assert second.state is State.STARTED and second.pid != first.pid
        assert not psutil.pid_exists(first.pid) or psutil.Process(first.pid).status() == "zombie"
    finally:
        stack.down()
