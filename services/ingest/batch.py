"""One poll's worth of records → results and dead letters: decode, one batched pipeline call, merge.

Pure of Kafka clients: it takes decoded `KafkaRecord`s and a `MatchPipeline` and returns what must be
published. Exceptions from the pipeline propagate (a dependency is down: the caller retries); refusals,
whether found here or returned by the pipeline as ``REJECTED`` results, become dead letters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from twinstream.codec import DeadLetter, DeadLetterInfo, KafkaRecord, RecordRejection, decode_record
from twinstream.config import LimitsSettings
from twinstream.contracts import Decision, ImageRequest, MatchResult, RejectReason
from twinstream.ports import MatchPipeline

#: REJECTED results that are answers, not poison: the request was well-formed, there is just nothing to
#: compare it with (e.g. verify against a subject never enrolled). They are published but not dead-lettered.
NOT_DEAD_LETTER_REASONS = frozenset({RejectReason.UNKNOWN_SUBJECT})


class PipelineContractError(RuntimeError):
    """The pipeline answered with a different number of results than requests."""


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """Everything a batch produces: one result per record (in record order) and the dead letters.

    ``refused_here`` are the results made without the pipeline (records refused while decoding).
    """

    results: tuple[MatchResult, ...]
    dead_letters: tuple[DeadLetter, ...]
    refused_here: tuple[MatchResult, ...] = ()


def run_batch(
    records: Sequence[KafkaRecord],
    pipeline: MatchPipeline,
    limits: LimitsSettings,
    *,
    worker: str,
    now_ms: int,
) -> BatchOutcome:
    """Decode ``records``, send the valid ones to ``pipeline`` in one call, and merge the answers.

    Args:
        records: The polled records, in the order they should be answered.
        pipeline: The batched match pipeline (one ``process`` call per batch; none if nothing is valid).
        limits: Input limits for the cheap checks.
        worker: Name recorded in the dead-letter metadata.
        now_ms: Failure time recorded in the dead-letter metadata.

    Raises:
        Exception: Whatever the pipeline raises (the caller treats it as a dependency failure).
        PipelineContractError: If the pipeline returns the wrong number of results.
    """
    decoded = [decode_record(record, limits) for record in records]
    requests = [item for item in decoded if isinstance(item, ImageRequest)]
    answers = iter(_process(pipeline, requests))
    results: list[MatchResult] = []
    dead: list[DeadLetter] = []
    refused: list[MatchResult] = []
    for record, item in zip(records, decoded, strict=True):
        if isinstance(item, RecordRejection):
            result = item.to_result()
            refused.append(result)
        else:
            result = next(answers)
        results.append(result)
        if _is_dead_letter(result):
            assert result.error_reason is not None
            info = DeadLetterInfo(
                result.request_id, result.error_reason, result.error_detail, record.source, now_ms, worker
            )
            dead.append(DeadLetter(record, info))
    return BatchOutcome(tuple(results), tuple(dead), tuple(refused))


def _process(pipeline: MatchPipeline, requests: list[ImageRequest]) -> list[MatchResult]:
    if not requests:
        return []
    answers = list(pipeline.process(requests))
    if len(answers) != len(requests):
        raise PipelineContractError(f"pipeline returned {len(answers)} results for {len(requests)} requests")
    return answers


def _is_dead_letter(result: MatchResult) -> bool:
    return (
        result.decision == Decision.REJECTED
        and result.error_reason is not None
        and result.error_reason not in NOT_DEAD_LETTER_REASONS
    )
