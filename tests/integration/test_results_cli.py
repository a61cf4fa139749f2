"""`twinstream results` against a real broker: producer-chosen text is shown as text, garbage is skipped."""

from __future__ import annotations

import io
import json

import pytest
from kafka import KafkaProducer
from rich.console import Console

from cli.commands.stream import results
from tests.support.streams import producer_for, stream_settings
from twinstream.codec import result_to_json, result_to_protobuf
from twinstream.config import Settings
from twinstream.contracts import Candidate, Decision, MatchResult, Op, Rejection, RejectReason

pytestmark = pytest.mark.integration
#: Ids a producer may choose (the request id is any printable text) that are rich markup.
MARKUP_ID = "[/red]"
MARKUP_RESULTS = [
    MatchResult(
        MARKUP_ID, Op.IDENTIFY, Decision.MATCH, tenant="t", candidates=(Candidate("[bold]x", 0.1, 0.9),)
    ),
    MatchResult.rejected("[link=http://x]r2", Rejection(RejectReason.BAD_HEADER, "[/]"), op=Op.ENROLL),
]


def send(producer: KafkaProducer, topic: str, value: bytes, content_type: bytes | None = None) -> None:
    headers = [] if content_type is None else [("content-type", content_type)]
    producer.send(topic, value=value, headers=headers, partition=0)


def run_results(settings: Settings, **options: bool) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = results(
        settings,
        Console(file=out, width=400, color_system=None),
        err_console=Console(file=err, width=400, color_system=None),
        **options,
    )
    return code, out.getvalue(), err.getvalue()


def test_results_table_shows_markup_in_ids_as_text(
    kafka_bootstrap: str, stack_settings: Settings, unique_name: str
):
    settings = stream_settings(stack_settings, unique_name, partitions=1)
    producer = producer_for(settings)
    for result in MARKUP_RESULTS:
        send(producer, settings.kafka.results_topic, result_to_json(result))
    producer.flush()
    producer.close()
    code, out, _ = run_results(settings)
    assert code == 0
    assert MARKUP_ID in out and "[bold]x" in out and "[link=http://x]r2" in out
    assert "2 result(s)" in out


def test_garbage_on_the_results_topic_is_skipped_counted_and_warned_about(
    kafka_bootstrap: str, stack_settings: Settings, unique_name: str, capsys: pytest.CaptureFixture[str]
):
    settings = stream_settings(stack_settings, unique_name, partitions=1)
    good = MatchResult("good-1", Op.VERIFY, Decision.NO_MATCH, tenant="t", subject="s", distance=0.9)
    producer = producer_for(settings)
    topic = settings.kafka.results_topic
    send(producer, topic, b"\x00\xffnot a result")  # sniffed as protobuf, which it is not
    send(producer, topic, b'{"request_id": "half')  # truncated JSON
    send(producer, topic, b"[1, 2]")  # JSON of another shape
    send(producer, topic, b'{"request_id": "x", "decision": "PERHAPS"}')  # unknown decision
    send(producer, topic, result_to_protobuf(good), b"application/x-protobuf")
    producer.flush()
    producer.close()

    code, out, err = run_results(settings)
    assert code == 0
    assert "good-1" in out and "1 result(s), 4 undecodable record(s) skipped" in out
    assert err.count("warning: skipped an undecodable record at partition 0 offset") == 4

    capsys.readouterr()
    code, _, err = run_results(settings, as_json=True)
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and [json.loads(line)["request_id"] for line in lines] == ["good-1"]
    assert "4 undecodable record(s) skipped" in err
