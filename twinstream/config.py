"""Typed settings for every twinstream process (pydantic-settings, prefix ``TWINSTREAM_``).

Nested groups use ``__``: ``TWINSTREAM_KAFKA__BOOTSTRAP=broker:9092``. Settings are built once in
each entry point (CLI command, Serve app, worker) and passed down; there is no module-level
singleton. Defaults match the local stack (`twinstream stack up`) on loopback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class _Group(BaseModel):
    """A settings group: an unknown key is an error (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid")


Port = Annotated[int, Field(ge=1, le=65535)]


class KafkaSettings(_Group):
    """Broker address, topic names and the local broker's ports."""

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
    # Local broker only (the stack): listener and KRaft controller ports.
    port: Port = 19092  # local broker client port
    controller_port: Port = 19093  # local broker KRaft controller port
    version: str = Field("4.1.1", description="org.apache.kafka:kafka_2.13 version the stack runs")
    heap: str = Field("512m", description="broker JVM heap (-Xmx) for the local stack")


class RedisSettings(_Group):
    """Redis for the result store and the embedding cache."""

    url: str = "redis://127.0.0.1:16379/0"
    port: Port = 16379  # local redis-server port
    result_ttl_s: int = Field(7 * 24 * 3600, ge=1, description="how long results are kept")
    cache_ttl_s: int = Field(24 * 3600, ge=1, description="how long cached embeddings are kept")
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

    uri: str = "http://127.0.0.1:19531"
    port: Port = 19531  # local milvus-lite server port
    token: str = ""
    collection_prefix: str = "twinstream"
    index_type: Literal["FLAT", "IVF_FLAT", "IVF_SQ8", "HNSW", "HNSW_SQ", "AUTOINDEX"] = "HNSW"
    index_params: dict[str, int] = Field(default_factory=lambda: {"M": 16, "efConstruction": 128})
    search_params: dict[str, int] = Field(default_factory=lambda: {"ef": 64})
    mirror_max_vectors: int = Field(
        100_000, ge=0, description="largest tenant each replica keeps in memory for exact search (0: off)"
    )
    mirror_max_total: int = Field(1_000_000, ge=1, description="vectors a replica's mirror holds in all")
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
    num_cpus: int = Field(2, ge=1, description="CPUs the local head offers")

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"


class ServeSettings(_Group):
    """Ray Serve: replicas, batching and the HTTP API."""

    app_name: str = "twinstream"
    http_host: str = "127.0.0.1"
    http_port: Port = 18000  # Serve HTTP port
    replicas: int = Field(1, ge=1)
    cpus_per_replica: float = Field(1.0, gt=0)
    threads_per_replica: int = Field(1, ge=1)
    max_batch_size: int = Field(32, ge=1, le=4096)
    batch_wait_timeout_s: float = Field(0.01, ge=0, le=10)
    api_keys: dict[str, str] = Field(
        default_factory=dict,
        description="API key -> tenant it is bound to ('*' for all tenants); empty disables auth",
    )
    autoscaling: dict[str, float] = Field(
        default_factory=dict,
        description="embedder autoscaling_config (min_replicas, max_replicas, target_ongoing_requests…); "
        "empty means a fixed number of `replicas`",
    )
    ingress_replicas: int = Field(1, ge=1, description="replicas of the pipeline / HTTP ingress deployment")
    ingress_cpus: float = Field(0.5, gt=0, description="CPUs per pipeline / HTTP ingress replica")
    max_ongoing_requests: int = Field(128, ge=1, description="per replica, for both deployments")
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


class LimitsSettings(_Group):
    """Input safety: what an image may be before it is decoded."""

    max_image_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    max_pixels: int = Field(40_000_000, ge=64, description="width*height refused above this")
    allowed_formats: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "PPM", "GIF", "TIFF")


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
        extra="forbid",
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    milvus: MilvusSettings = Field(default_factory=MilvusSettings)
    ray: RaySettings = Field(default_factory=RaySettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
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
    """Build settings from the environment (and ``overrides``), turning pydantic's error into a clear one."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = "__".join(str(part) for part in err["loc"]).upper()
            lines.append(f"  TWINSTREAM_{loc}: {err['msg']} (got {err.get('input')!r})")
        raise SettingsError("invalid twinstream settings:\n" + "\n".join(lines)) from None
