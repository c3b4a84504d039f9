"""The settings model: one frozen, validated object with a section per concern.

Every field has a default, so an empty file (or none) is a valid configuration: the embedded
service on loopback. The TOML shape (``version = 2``) mirrors these sections one to one.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

__all__ = [
    "CURRENT_VERSION",
    "Cache",
    "Datalog",
    "EmbeddedLogSettings",
    "Kafka",
    "Logging",
    "Server",
    "Settings",
    "Stream",
    "Topics",
]

CURRENT_VERSION: Final = 2


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Server(_Section):
    """The HTTP API (``rune serve``)."""

    host: str = Field("127.0.0.1", description="interface to listen on; 0.0.0.0 in containers")
    port: int = Field(8080, ge=0, le=65535, description="0 picks a free port")
    workers: int = Field(
        1, ge=1, le=64, description="processes, each a full replica (Kafka mode only)"
    )
    max_body_bytes: int = Field(1 << 20, ge=1024, description="larger bodies get 413")
    max_batch: int = Field(1000, ge=1, description="requests or events per POST")
    max_id_chars: int = Field(256, ge=1, le=4096, description="request id length limit")
    max_context_depth: int = Field(16, ge=1, le=256, description="nesting of request context")
    rate_limit_per_s: float = Field(
        1000.0, ge=0, description="per-client token bucket refill; 0 turns limiting off"
    )
    rate_limit_burst: int = Field(2000, ge=1, description="per-client bucket size")
    log_wait_s: float = Field(
        10.0,
        gt=0,
        description="bound on an HTTP write (event, bundle, decision record) waiting for the log;"
        " then 503 log_unavailable (the write still completes once the log is back)",
    )
    admin_token: SecretStr = Field(
        SecretStr(""), description="bearer token of /admin/*; empty disables admin routes"
    )


class Cache(_Section):
    """The decision cache (invalidated by every change of facts or bundle)."""

    ttl_seconds: float = Field(300.0, ge=0, description="0: entries never expire by age")
    max_size_mb: float = Field(64, ge=0)
    max_entries: int = Field(100_000, ge=0, description="0 turns the cache off")


class Datalog(_Section):
    max_iterations: int | None = Field(
        100_000, ge=1, description="semi-naive rounds per recursive stratum at materialization"
    )
    enable_optimizations: bool = Field(True, description="greedy join ordering")


class Kafka(_Section):
    bootstrap: str = Field("", description="HOST:PORT[,HOST:PORT]; empty: the embedded log")
    group_id: str = Field("rune", min_length=1, description="consumer group of requests")
    client_id: str = Field("rune", min_length=1)
    partitions: int = Field(3, ge=1, description="partitions of topics RUNE creates")
    replication_factor: int = Field(
        1, ge=1, le=32, description="replicas of topics RUNE creates (3 on a production cluster)"
    )
    isolation_level: Literal["read_uncommitted", "read_committed"] = "read_uncommitted"
    linger_ms: float = Field(1.0, ge=0, le=900_000, description="producer batching delay")
    batch_bytes: int = Field(1_000_000, ge=1, description="largest produce batch (batch.size)")
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "none"
    delivery_timeout_ms: int = Field(
        0, ge=0, description="give up on a record after this long; 0: never (wait for the broker)"
    )
    request_timeout_ms: int = Field(15_000, ge=100, description="broker request timeout")
    fetch_queue_kbytes: int = Field(
        16_384, ge=1, description="records prefetched per reader (queued.max.messages.kbytes)"
    )
    exactly_once: bool = Field(
        False, description="decisions and request offsets commit in one Kafka transaction"
    )
    transactional_id: str = Field(
        "", description="stable id of this instance's transactional producer; empty: derived"
    )
    transaction_timeout_ms: int = Field(30_000, ge=1000, le=900_000)
    librdkafka: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="further librdkafka properties for every client (TLS, SASL...); "
        "values are secrets (masked wherever settings are shown)",
    )


class Topics(_Section):
    facts: str = "rune.facts"
    policies: str = "rune.policies"
    requests: str = "rune.requests"
    decisions: str = "rune.decisions"
    changes: str = "rune.changes"
    dlq: str = "rune.dlq"
    state: str = "rune.state"

    @model_validator(mode="after")
    def _distinct(self) -> Topics:
        names = list(self.model_dump().values())
        if len(set(names)) != len(names):
            raise ValueError(f"topic names must be distinct, got {names}")
        return self


class Stream(_Section):
    """The stream service's loops."""

    ingest_batch: int = Field(5000, ge=1, description="records applied per step")
    serve_batch: int = Field(1000, ge=1, description="requests decided per step")
    poll_timeout_s: float = Field(0.05, gt=0)
    token_wait_s: float = Field(5.0, ge=0, description="bound on waiting for a token")
    max_waiting: int = Field(100_000, ge=1, description="requests waiting for tokens")
    changefeed_relations: tuple[str, ...] = ()
    checkpoint_interval_s: float = Field(1.0, gt=0)
    shutdown_timeout_s: float = Field(5.0, gt=0, description="bound on draining at stop")
    gc_freeze: bool = Field(
        True,
        description="after catch-up and bundle swaps, freeze the heap so the cyclic GC "
        "never rescans the views",
    )
    max_event_bytes: int = Field(
        1 << 20, ge=1024, description="larger fact/entity records are dead-lettered"
    )
    max_request_bytes: int = Field(
        256 * 1024, ge=1024, description="larger requests are denied unread"
    )
    max_bundle_bytes: int = Field(
        4 << 20, ge=1024, description="larger policy bundles are rejected"
    )
    partitioning: Literal["default", "any"] = Field(
        "default",
        description="'default': a fact record must be in the partition Kafka's default "
        "partitioner gives its key; 'any': no check",
    )
    dead_letter_payload_bytes: int = Field(
        64 * 1024, ge=0, description="key and value bytes kept in a dead letter"
    )
    retry_backoff_max_s: float = Field(
        5.0, gt=0, description="longest wait between retries of a failed delivery"
    )
    switch_interval_ms: float = Field(
        1.0,
        gt=0,
        le=100,
        description="Python's thread switch interval in rune run/serve (its default is 5 ms)",
    )


class EmbeddedLogSettings(_Section):
    """What each partition of the embedded log keeps (no Kafka): the defaults of topics whose
    configs do not say otherwise. ``-1`` lifts a bound."""

    retention_bytes: int = Field(
        16 << 20,
        ge=-1,
        description="delete-policy partitions drop their oldest segments beyond this many "
        "bytes (key + value + ~200 bytes per record)",
    )
    retention_records: int = Field(100_000, ge=-1, description="... or beyond this many records")
    retention_ms: int = Field(
        3_600_000, ge=-1, description="... or once their last record is older than this"
    )
    segment_bytes: int = Field(
        1 << 20, ge=1, description="a partition's segment rolls at this size"
    )
    segment_ms: int = Field(600_000, ge=1, description="... or at this age")
    min_cleanable_dirty_ratio: float = Field(
        0.5,
        gt=0,
        le=1,
        description="compacted partitions are cleaned once this share of their bytes was "
        "appended since the last pass",
    )


class Logging(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"
    decisions: Literal["all", "deny", "none"] = Field(
        "deny",
        description="which decisions get a log line (the decision topic has all of them)",
    )
    include_request: bool = Field(
        False, description="decision records also carry principal, action and resource"
    )
    pseudonymize: bool = Field(
        False, description="keyed hash of principal ids in logs and decision records"
    )
    pseudonym_key: SecretStr = Field(
        SecretStr(""), description="HMAC key; required to pseudonymize"
    )

    @model_validator(mode="after")
    def _key_present(self) -> Logging:
        if self.pseudonymize and len(self.pseudonym_key.get_secret_value()) < 16:
            raise ValueError("pseudonymize needs a pseudonym_key of at least 16 characters")
        return self


class Settings(_Section):
    """Everything RUNE reads from configuration (``version`` is the file format's)."""

    version: Literal[2] = CURRENT_VERSION
    server: Server = Server()
    cache: Cache = Cache()
    datalog: Datalog = Datalog()
    kafka: Kafka = Kafka()
    topics: Topics = Topics()
    stream: Stream = Stream()
    logging: Logging = Logging()
    embedded_log: EmbeddedLogSettings = EmbeddedLogSettings()

    @model_validator(mode="after")
    def _workers_need_kafka(self) -> Settings:
        if self.server.workers > 1 and not self.kafka.bootstrap:
            raise ValueError(
                "server.workers > 1 needs kafka.bootstrap: embedded replicas would not share state"
            )
        return self

    @property
    def embedded(self) -> bool:
        return not self.kafka.bootstrap
