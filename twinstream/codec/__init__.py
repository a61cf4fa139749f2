"""Wire formats ⇄ contracts: the only package that imports the generated protobuf code.

`records` turns Kafka records into requests or rejections (and requests into headers / envelopes),
`results` encodes and decodes `MatchResult` as JSON or protobuf, `dead_letters` writes and reads the
metadata a DLQ record carries.
"""

from twinstream.codec._wire import (
    H_CONTENT_TYPE,
    H_DEAD_LETTER,
    H_DEAD_LETTER_TRIMMED,
    H_ERROR_DETAIL,
    H_ERROR_REASON,
    H_OP,
    H_REQUEST_ID,
    H_SUBJECT,
    H_TENANT,
    H_TOP_K,
    JSON_CONTENT_TYPE,
    PROTOBUF_CONTENT_TYPE,
    Headers,
    header_value,
)
from twinstream.codec.dead_letters import (
    DeadLetter,
    DeadLetterCopy,
    DeadLetterInfo,
    dead_letter_headers,
    read_dead_letter,
    record_batch_bytes,
)
from twinstream.codec.records import (
    KafkaRecord,
    RecordRejection,
    decode_record,
    encode_image_event,
    request_headers,
)
from twinstream.codec.results import (
    decode_result,
    encode_result,
    encode_results,
    result_from_dict,
    result_from_json,
    result_from_protobuf,
    result_to_dict,
    result_to_json,
    result_to_protobuf,
)

__all__ = [
    "H_CONTENT_TYPE",
    "H_DEAD_LETTER",
    "H_DEAD_LETTER_TRIMMED",
    "H_ERROR_DETAIL",
    "H_ERROR_REASON",
    "H_OP",
    "H_REQUEST_ID",
    "H_SUBJECT",
    "H_TENANT",
    "H_TOP_K",
    "JSON_CONTENT_TYPE",
    "PROTOBUF_CONTENT_TYPE",
    "DeadLetter",
    "DeadLetterCopy",
    "DeadLetterInfo",
    "Headers",
    "KafkaRecord",
    "RecordRejection",
    "dead_letter_headers",
    "decode_record",
    "decode_result",
    "encode_image_event",
    "encode_result",
    "encode_results",
    "header_value",
    "read_dead_letter",
    "record_batch_bytes",
    "request_headers",
    "result_from_dict",
    "result_from_json",
    "result_from_protobuf",
    "result_to_dict",
    "result_to_json",
    "result_to_protobuf",
]
