"""Typed settings for every twinstream process (pydantic-settings, prefix ``TWINSTREAM_``).

Nested groups use ``__``: ``TWINSTREAM_KAFKA__BOOTSTRAP=broker:9092``. Settings are built once in
each entry point (CLI command, Serve app, worker) and passed down; there is no module-level
singleton. Defaults match the local stack (`twinstream stack up`) on loopback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    SerializationInfo,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError

from twinstream.redaction import is_masked, mask_keys, redact_url, shown_input, variable_name


class _Group(BaseModel):
    """A settings group: an unknown key is an error (a typo must not be silently ignored).

    Secrets never show in its repr (URL passwords are masked), and a masked placeholder copied from
    `twinstream settings` output is refused rather than used as a password.
    """

    model_config = ConfigDict(extra="forbid")

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _no_masked_placeholders(self) -> _Group:
        for name, value in self:
            texts = [value.get_secret_value()] if isinstance(value, SecretStr) else [value]
            texts = list(value) if isinstance(value, dict) else texts
            if any(isinstance(text, str) and is_masked(text) for text in texts):
                raise ValueError(f"{name} holds a masked placeholder ('**********'), not the secret")
        return self


Port = Annotated[int, Field(ge=1, le=65535)]

#: Serialisation context key that writes secrets in clear (only for a child process's settings file).
REVEAL_SECRETS = "reveal_secrets"


def _revealed(info: SerializationInfo) -> bool:
    context = info.context if isinstance(info.context, dict) else {}
    return bool(context.get(REVEAL_SECRETS))


def _secret_json(value: SecretStr, info: SerializationInfo) -> str:
    """A secret in JSON: masked, unless the caller asked for it in clear (`write_settings_file`)."""
    return value.get_secret_value() if _revealed(info) else str(value)


def _keys_out(value: dict[str, str], info: SerializationInfo) -> dict[str, str]:
    return dict(value) if _revealed(info) else mask_keys(value)


def _url_out(value: str, info: SerializationInfo) -> str:
    return value if _revealed(info) else redact_url(value)


#: A secret setting: never printed (``**********`` in `twinstream settings` and in reprs).
Secret = Annotated[SecretStr, PlainSerializer(_secret_json, return_type=str, when_used="json")]
#: API key → tenant: the keys are masked in every dump unless revealed (the tenants stay readable).
SecretKeys = Annotated[dict[str, str], PlainSerializer(_keys_out, return_type=dict[str, str])]
#: A URL that may carry a password (``redis://:pw@host``): the password is masked unless revealed.
UrlWithPassword = Annotated[str, PlainSerializer(_url_out, return_type=str)]


class KafkaSecurity(StrEnum):
    """How Kafka clients authenticate to the brokers."""

    PLAINTEXT = "plaintext"  # no authentication: anyone who reaches the broker may do anything
    SASL_SCRAM = "sasl-scram"  # SASL/SCRAM-SHA-512 logins; the brokers enforce ACLs per principal


class TenantBinding(StrEnum):
    """Where the tenant of an image record comes from."""

    HEADER = "header"  # the shared images topic and the record's `tenant` header: producers are trusted
    TOPIC = "topic"  # the record's topic `<images_topic>.<tenant>`, writable only by that tenant's principal


class KafkaSettings(_Group):
    """Broker address, security, topic names and the local broker's ports."""

    bootstrap: str = Field("127.0.0.1:19092", description="bootstrap servers, comma separated")
    images_topic: str = "twinstream.images"
    results_topic: str = "twinstream.results"
    dlq_topic: str = "twinstream.dlq"
    partitions: int = Field(4, ge=1, le=1024, description="partitions per topic created by the stack")
    max_message_bytes: int = Field(
        25 * 1024 * 1024, ge=1024, description="topic max.message.bytes and client fetch/request limits"
    )
    results_format: Literal["json", "protobuf"] = "json"
    producer_batch_bytes: int = Field(
        1024 * 1024,
        ge=16 * 1024,
        description="our producers' batch.size; kafka-python wakes its sender on every send while more "
        "than one batch per partition waits, so the 16 KiB default halves the produce rate",
    )
    bootstrap_timeout_ms: int = Field(10_000, ge=100)
    # Raw images (and, in the DLQ, refused ones) are personal data: keep them only as long as a replay
    # may need them. The erasure ledger (services.lifecycle.ledger) remembers an erased subject for the
    # longer of the two, so a replay within retention cannot enrol the subject again.
    images_retention_ms: int = Field(
        3 * 24 * 3600 * 1000, ge=60_000, description="retention.ms of the images topic (raw images)"
    )
    dlq_retention_ms: int = Field(
        7 * 24 * 3600 * 1000, ge=60_000, description="retention.ms of the DLQ (refused records, raw bytes)"
    )
    # The enrolment log: a compacted topic, key = image id, value = the image and its owner; a null
    # value (tombstone) deletes an image. It is the source every model version's gallery is rebuilt from.
    enrolments_topic: str = "twinstream.enrolments"
    enrolments_retention_ms: int = Field(
        -1,
        ge=-1,
        description="-1 (default): compact only, every live enrolment is kept. A positive value adds "
        "cleanup.policy=delete: enrolments older than that are dropped and can no longer be re-indexed",
    )
    enrolments_retention_bytes: int = Field(
        -1, ge=-1, description="largest size of one partition of the log (-1: unbounded; >0 adds delete)"
    )
    enrolments_segment_ms: int = Field(
        24 * 3600 * 1000,
        ge=100,
        description="segment.ms: the active segment is never compacted, so a deleted image's record can "
        "stay this long before the cleaner may see it",
    )
    enrolments_max_compaction_lag_ms: int = Field(
        24 * 3600 * 1000,
        ge=100,
        description="max.compaction.lag.ms: a rolled segment is compacted within this, whatever its dirt",
    )
    enrolments_min_cleanable_dirty_ratio: float = Field(
        0.1, gt=0, le=1, description="min.cleanable.dirty.ratio: compact once this share of the log is stale"
    )
    enrolments_delete_retention_ms: int = Field(
        24 * 3600 * 1000,
        ge=0,
        description="delete.retention.ms: how long a tombstone outlives compaction; a re-index that pauses "
        "longer must start again (twinstream models reindex --restart)",
    )
    security: KafkaSecurity = Field(
        KafkaSecurity.PLAINTEXT,
        description="plaintext: no authentication (the local dev stack's default); sasl-scram: every client "
        "logs in with SCRAM-SHA-512 as sasl_username and the brokers enforce ACLs (docs/security.md)",
    )
    tenant_binding: TenantBinding = Field(
        TenantBinding.HEADER,
        description="header: one shared images topic, the tenant read from each record's `tenant` header "
        "(only for deployments whose producers are all trusted); topic: one images topic per tenant, "
        "`<images_topic>.<tenant>`, consumed by pattern, results on `<results_topic>.<tenant>`, and a "
        "`tenant` header naming another tenant is refused",
    )
    sasl_username: str = Field("", description="this process's SCRAM user (sasl-scram)")
    sasl_password: Secret = Field(
        SecretStr(""), description="this process's SCRAM password (sasl-scram); never printed"
    )
    metadata_max_age_ms: int = Field(
        30_000,
        ge=1_000,
        description="how often clients refresh topic metadata; in topic binding it bounds how long ingest "
        "takes to start consuming a new tenant's images topic",
    )
    # Local broker only (the stack): listener and KRaft controller ports.
    port: Port = 19092  # local broker client port
    controller_port: Port = 19093  # local broker KRaft controller port
    version: str = Field("4.1.1", description="org.apache.kafka:kafka_2.13 version the stack runs")
    heap: str = Field("512m", description="broker JVM heap (-Xmx) for the local stack")

    def topic_configs(self) -> dict[str, dict[str, str]]:
        """Per topic we create, the configs it is created with (``max.message.bytes`` for all)."""
        size = {"max.message.bytes": str(self.max_message_bytes)}
        deleting = self.enrolments_retention_ms > 0 or self.enrolments_retention_bytes > 0
        return {
            self.images_topic: {**size, "retention.ms": str(self.images_retention_ms)},
            self.results_topic: dict(size),
            self.dlq_topic: {**size, "retention.ms": str(self.dlq_retention_ms)},
            self.enrolments_topic: {
                **size,
                "cleanup.policy": "compact,delete" if deleting else "compact",
                "retention.ms": str(self.enrolments_retention_ms),
                "retention.bytes": str(self.enrolments_retention_bytes),
                "segment.ms": str(self.enrolments_segment_ms),
                "max.compaction.lag.ms": str(self.enrolments_max_compaction_lag_ms),
                "min.cleanable.dirty.ratio": str(self.enrolments_min_cleanable_dirty_ratio),
                "delete.retention.ms": str(self.enrolments_delete_retention_ms),
            },
        }

    def configs_of(self, topic: str) -> dict[str, str]:
        """The configs ``topic`` is created with: `topic_configs`' entry, the images or results topic's
        for a tenant's own ``<images_topic>.<tenant>`` / ``<results_topic>.<tenant>`` (topic binding),
        else ``max.message.bytes`` only."""
        known = self.topic_configs()
        if topic in known:
            return known[topic]
        for base in (self.images_topic, self.results_topic):
            if topic.startswith(f"{base}."):
                return known[base]
        return {"max.message.bytes": str(self.max_message_bytes)}

    @property
    def raw_image_retention_s(self) -> int:
        """The longest time a raw image may still be replayed from a topic (images or DLQ), in seconds."""
        return max(self.images_retention_ms, self.dlq_retention_ms) // 1000

    @model_validator(mode="after")
    def _credentials_for_sasl(self) -> KafkaSettings:
        if self.security is KafkaSecurity.SASL_SCRAM and not (
            self.sasl_username and self.sasl_password.get_secret_value()
        ):
            raise ValueError(
                "security 'sasl-scram' needs TWINSTREAM_KAFKA__SASL_USERNAME and "
                "TWINSTREAM_KAFKA__SASL_PASSWORD"
            )
        return self


class RedisSettings(_Group):
    """Redis for the result store and the embedding cache."""

    url: UrlWithPassword = "redis://127.0.0.1:16379/0"
    port: Port = 16379  # local redis-server port
    result_ttl_s: int = Field(7 * 24 * 3600, ge=1, description="how long results are kept")
    cache_ttl_s: int = Field(24 * 3600, ge=1, description="how long cached embeddings are kept")
    # Local Redis only (the stack; docker-compose sets the same): a memory bound and what goes first.
    maxmemory: str = Field(
        "1gb", pattern=r"^[1-9][0-9]*(b|kb|mb|gb)?$", description="local redis-server's maxmemory"
    )
    maxmemory_policy: Literal["volatile-ttl", "volatile-lru", "noeviction"] = Field(
        "volatile-ttl",
        description="what the local Redis evicts at maxmemory. volatile-ttl: only keys with a TTL (cached "
        "embeddings, 1 day; results, 7 days), soonest to expire first, so the cache goes before results "
        "and gallery generations (no TTL) are never evicted",
    )
    socket_timeout_s: float = Field(
        5.0, gt=0, description="longest wait for a reply: a black-holed Redis fails a call, never hangs it"
    )
    connect_timeout_s: float = Field(2.0, gt=0, description="longest wait for a TCP connection")
    health_check_interval_s: int = Field(
        30, ge=0, description="PING a connection idle this long before reusing it (0: never)"
    )
    retries: int = Field(
        0, ge=0, description="client-level retries of a failed call (callers retry outages themselves)"
    )


class MilvusSettings(_Group):
    """The vector gallery."""

    uri: UrlWithPassword = "http://127.0.0.1:19531"
    port: Port = 19531  # local milvus-lite server port
    token: Secret = Field(SecretStr(""), description="Milvus token or user:password; never printed")
    collection_prefix: str = "twinstream"
    index_type: Literal["FLAT", "IVF_FLAT", "IVF_SQ8", "HNSW", "HNSW_SQ", "AUTOINDEX"] = "HNSW"
    index_params: dict[str, int] = Field(default_factory=lambda: {"M": 16, "efConstruction": 128})
    search_params: dict[str, int] = Field(default_factory=lambda: {"ef": 64})
    mirror_max_vectors: int = Field(
        100_000, ge=0, description="largest tenant each replica keeps in memory for exact search (0: off)"
    )
    mirror_max_total: int = Field(1_000_000, ge=1, description="vectors a replica's mirror holds in all")
    mirror_max_tenants: int = Field(
        10_000,
        ge=1,
        description="tenants a replica's mirror holds (empty ones too), least recently used dropped",
    )
    timeout_s: float = Field(
        30.0, gt=0, description="longest connect and longest data call (search, query, upsert, delete, flush)"
    )
    load_timeout_s: float = Field(
        600.0, gt=0, description="longest collection create/load (a large gallery loads for minutes)"
    )


class RaySettings(_Group):
    """The Ray cluster (head ports apply to the local stack's `ray start --head`)."""

    address: str = Field("", description="Ray address; empty means the local stack's head")
    gcs_port: Port = 16380  # local head GCS port
    dashboard_port: Port = 18265  # local head dashboard / job API port
    client_port: Port = 10001  # local head Ray Client port
    metrics_export_port: Port = 18080  # local head metrics export port
    dashboard_agent_port: Port = 18266  # local head dashboard agent HTTP port
    haproxy_stats_port: Port = 18404  # local head: HAProxy's stats page (serve_fast_ingress)
    haproxy_metrics_port: Port = 18101  # local head: HAProxy's Prometheus endpoint (serve_fast_ingress)
    num_cpus: int = Field(2, ge=1, description="CPUs the local head offers")
    serve_fast_ingress: bool = Field(
        True,
        description="local head: HTTP reaches the app's replicas through HAProxy and each replica's own "
        "server (Serve's direct ingress) instead of Serve's Python proxy (HTTP p50 20 → 9 ms measured)",
    )
    serve_drain_s: float = Field(
        5.0,
        ge=0,
        le=300,
        description="local head, serve_fast_ingress: how long a stopping replica stays reachable before it "
        "refuses new connections (RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S; Ray's default of 30 s "
        "is for load balancers outside the node, HAProxy on the head retries a refused connection)",
    )

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"


class ServeSettings(_Group):
    """Ray Serve: the app's replicas (each holds the towers, galleries and HTTP API), batching, HTTP."""

    app_name: str = "twinstream"
    http_host: str = "127.0.0.1"
    http_port: Port = 18000  # Serve HTTP port
    replicas: int = Field(1, ge=1, description="replicas of the app's one deployment")
    cpus_per_replica: float = Field(1.0, gt=0, description="CPUs Ray reserves per replica")
    threads_per_replica: int = Field(1, ge=1, description="torch intra-op threads of a replica's tower")
    prepare_processes: int = Field(
        0,
        ge=0,
        description="processes per replica that decode HTTP images and find their faces, for face models "
        "(dlib holds the GIL, so threads would take turns); 0: one per core of the machine",
    )
    gpus_per_replica: float = Field(0.0, ge=0, description="GPUs per replica; > 0 runs the towers on CUDA")
    max_batch_size: int = Field(32, ge=1, le=4096, description="HTTP requests coalesced into one batch")
    batch_wait_timeout_s: float = Field(
        0.0,
        ge=0,
        le=10,
        description="how long a lone HTTP request waits for company; 0 = none (requests that arrive while "
        "a batch runs still form the next batch)",
    )
    concurrent_batches: int = Field(
        1,
        ge=1,
        le=16,
        description="HTTP batches a replica runs at once: while one is in the tower, the next one's images "
        "are decoded and cut",
    )
    api_keys: SecretKeys = Field(
        default_factory=dict,
        repr=False,
        description="API key -> tenant it is bound to ('*' for all tenants); empty disables auth; the "
        "keys are never printed",
    )
    autoscaling: dict[str, float] = Field(
        default_factory=dict,
        description="autoscaling_config (min_replicas, max_replicas, target_ongoing_requests…); "
        "empty means a fixed number of `replicas`",
    )
    max_ongoing_requests: int = Field(128, ge=1, description="per replica")
    route_prefix: str = Field("/", pattern=r"^/[A-Za-z0-9_\-/]*$", description="HTTP route prefix of the app")


class IngestSettings(_Group):
    """Kafka ingest workers."""

    group_id: str = "twinstream-ingest"
    workers: int = Field(1, ge=1, le=64)
    max_poll_records: int = Field(
        512,
        ge=1,
        description="records per poll, each poll one pipeline call; memory is bounded by the fetch sizes. "
        "A backlog drains fastest in big batches (digits bench: 128 → 2,100, 512 → 2,900-3,000 images/s); "
        "a quiet topic still returns whatever is there at once",
    )
    poll_timeout_ms: int = Field(500, ge=1)
    max_poll_interval_ms: int = Field(600_000, ge=10_000)
    session_timeout_ms: int = Field(10_000, ge=1_000)
    retry_initial_s: float = Field(0.5, gt=0)
    retry_max_s: float = Field(15.0, gt=0)
    max_record_attempts: int = Field(
        3,
        ge=1,
        description="attempts at a batch that fails while every dependency answers; then its failing "
        "records are isolated and dead-lettered as processing-failed (outages are retried without limit)",
    )


class LifecycleSettings(_Group):
    """Model versions: re-index by replaying the enrolment log, switching versions, erasure."""

    reindex_batch: int = Field(256, ge=1, le=8192, description="log records per re-index batch (one commit)")
    reindex_threads: int = Field(1, ge=1, description="torch threads of an in-process re-index")
    reindex_group_prefix: str = Field(
        "twinstream-reindex", description="consumer group of a version's re-index: <prefix>-<version>"
    )
    switch_grace_s: float = Field(
        2.0,
        ge=0,
        description="after a switch, wait this long (a batch's time under the old pointer) before the "
        "last catch-up of the new version from the log",
    )
    ledger_key: Secret = Field(
        SecretStr(""),
        description="secret HMAC key for the erasure ledger's subject hashes (empty: plain SHA-256, "
        "which a guessed name can be checked against); never printed",
    )
    ledger_margin_s: int = Field(
        3600, ge=0, description="the ledger outlives the raw images' retention by this much"
    )


class LimitsSettings(_Group):
    """Input safety: what an image may be before it is decoded."""

    max_image_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    max_pixels: int = Field(40_000_000, ge=64, description="width*height refused above this")
    allowed_formats: tuple[str, ...] = Field(
        ("JPEG", "PNG", "WEBP", "BMP", "PPM"),
        description="Pillow formats decoded (PPM covers PGM); the documented contract, nothing wider",
    )


class FacesSettings(_Group):
    """How faces are found in photos for face models (`twinstream.images.faces`); the chip itself (size,
    padding) is the model's, from its manifest."""

    min_face_px: int = Field(
        40, ge=8, description="smallest face side kept, in original pixels; sets the detector's up-sampling"
    )
    max_detect_side: int = Field(
        1280, ge=64, description="larger photos are scaled down to this long side before detection"
    )
    crop_max_side: int = Field(256, ge=16, description="images up to this long side count as face crops")
    allow_crop_fallback: bool = Field(
        True, description="a crop with no detection is aligned from the typical face box of a crop"
    )
    max_faces: int = Field(32, ge=1, le=256, description="most faces answered in one group photo")


class PolicySettings(_Group):
    """The operating points of tenants that set none (`PUT /v1/tenants/{tenant}/policy` sets one)."""

    verify_far: float = Field(1e-3, ge=1e-7, le=0.5, description="target false accept rate of verify")
    identify_fpir: float = Field(
        1e-2, ge=1e-7, le=0.5, description="target false positive identification rate of open-set identify"
    )


class MetricsSettings(_Group):
    """Prometheus endpoints."""

    ingest_base_port: Port = 19400  # first ingest worker /metrics port (worker i uses base+i)
    training_port: Port = 19450  # training driver /metrics port
    prometheus_port: Port = 19090  # local Prometheus port
    host: str = "127.0.0.1"  # interface the /metrics endpoints listen on (0.0.0.0 in containers)
    final_scrape_timeout_s: float = Field(
        60.0,
        ge=0,
        description="a training run registered with the local Prometheus keeps its /metrics up until "
        "Prometheus has scraped its last epoch, at most this long (0: do not wait)",
    )

    @property
    def local_prometheus_url(self) -> str:
        """The local stack's Prometheus (what `twinstream stack up` runs)."""
        return f"http://127.0.0.1:{self.prometheus_port}"


def default_data_dir() -> Path:
    """The shared data sets: ``../shared/datasets`` beside the working directory, else beside the checkout."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
        candidate = base.parent / "shared" / "datasets"
        if candidate.is_dir():
            return candidate
    return Path("../shared/datasets")


class PathsSettings(_Group):
    """Where state, models and data live."""

    state_dir: Path = Path(".twinstream")
    models_dir: Path = Path("models")
    data_dir: Path = Field(default_factory=default_data_dir)
    maven_repo: Path = Field(
        Path.home() / ".cache" / "twinstream" / "m2",
        description="Maven local repository for the broker jars (kept across clones)",
    )


class Settings(BaseSettings):
    """All settings of a twinstream process."""

    model_config = SettingsConfigDict(
        env_prefix="TWINSTREAM_",
        env_nested_delimiter="__",
        env_file=".env",
        # The same .env carries docker-compose's own secrets (REDIS_PASSWORD, …): read only our variables.
        dotenv_filtering="only_existing",
        extra="forbid",
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    milvus: MilvusSettings = Field(default_factory=MilvusSettings)
    ray: RaySettings = Field(default_factory=RaySettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    lifecycle: LifecycleSettings = Field(default_factory=LifecycleSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    faces: FacesSettings = Field(default_factory=FacesSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    paths: PathsSettings = Field(default_factory=PathsSettings)
    data_dir: Path | None = Field(
        None, description="TWINSTREAM_DATA_DIR: shared datasets (overrides paths.data_dir)"
    )

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value else value

    @property
    def datasets_dir(self) -> Path:
        return self.data_dir or self.paths.data_dir


class SettingsError(ValueError):
    """An invalid setting, with every problem listed by its environment variable name."""


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment (and ``overrides``), turning pydantic's error into a clear one.

    The message names every invalid variable; it shows a rejected value only where that cannot be a
    secret (`twinstream.redaction.shown_input`).
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except SourceError as exc:  # a group's JSON that does not parse; pydantic-settings names no value
        field = re.search(r'field "(\w+)"', str(exc))
        name = f"TWINSTREAM_{field.group(1).upper()}" if field else "a TWINSTREAM_ variable"
        raise SettingsError(f"invalid twinstream settings:\n  {name}: {exc}") from None
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name, _ = variable_name(err["loc"])
            lines.append(f"  {name}: {err['msg']}{shown_input(err['loc'], err.get('input'), err['type'])}")
        raise SettingsError("invalid twinstream settings:\n" + "\n".join(lines)) from None


def write_settings_file(settings: Settings, path: Path) -> Path:
    """Write ``settings`` as JSON for a child process (``--settings-file``), secrets in clear.

    The file is created readable by its owner only: it may hold API keys, tokens and passwords.
    """
    text = settings.model_dump_json(context={REVEAL_SECRETS: True})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    path.chmod(0o600)  # an existing file keeps its mode through O_TRUNC
    return path
