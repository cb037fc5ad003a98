"""Configuration: plain sub-configs and the process settings (pydantic-settings). No torch here.

Every knob is read from the environment with the prefix `FACTPATCH_` (nested fields with `__`:
`FACTPATCH_GUARD__MAX_LOCALITY_CHANGED=0.25`, `FACTPATCH_EDITORS__FT__STEPS=8`), from a `.env`
file, or passed to `Settings(...)` directly (tests do that). Nothing is read at import time.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL = "smollm2-135m-instruct"
Role = Literal["reader", "editor", "operator"]
_PREFIX = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class LimitsConfig(BaseModel):
    """Bounds on what one request may ask; violations are 422s that name the field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_prompt_chars: int = Field(1000, description="Longest prompt, rephrase or locality prompt (characters).")
    max_target_chars: int = Field(200, description="Longest edit target (characters).")
    max_subject_chars: int = Field(200, description="Longest subject (characters).")
    max_probes: int = Field(16, description="Most rephrases and most locality prompts per edit.")
    max_batch: int = Field(64, description="Most edits in one POST /v1/edits.")
    max_new_tokens: int = Field(256, description="Most tokens one /v1/generate may ask for.")
    max_candidates: int = Field(32, description="Most candidates in one /v1/score.")
    max_wait: float = Field(60.0, description="Longest ?wait= in seconds.")
    max_prompt_tokens: int = Field(512, description="Longest tokenised prompt + target the worker accepts.")
    max_queue: int = Field(10000, description="Most commands waiting; beyond it POSTs get 503.")
    max_metadata_bytes: int = Field(4096, description="Largest metadata object (JSON bytes).")
    max_json_depth: int = Field(
        32, ge=4, le=128,
        description="Deepest nesting of arrays and objects in a request body (a batch with probes needs 4; "
        "at most 128, well inside what the JSON parser and serialiser can carry).",
    )
    max_json_values: int = Field(
        10_000, ge=100, description="Most JSON values (strings, numbers, arrays, objects, …) in one request body."
    )
    max_messages: int = Field(64, description="Most chat messages in one query.")
    max_stop: int = Field(4, description="Most stop strings in one query.")


class StandingFact(BaseModel):
    """A fact of the guard's standing set: a prompt and the answer its greedy continuation starts with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: str = Field(min_length=1)
    answer: str = Field(min_length=1)


class GuardConfig(BaseModel):
    """The writer's cheap acceptance check around every edit batch (editing.guard, editing.probes).

    It compares greedy answers before and after the batch on three probe sets: the locality prompts
    the edits name (and `canaries`), the `standing` facts, and `neighbours` prompts derived from each
    edit (its prompt with the subject replaced by other well-known entities)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="Run the guard at all.")
    max_locality_changed: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Reject a batch when more than this share of its locality prompts change their greedy answer.",
    )
    locality_tokens: int = Field(6, ge=1, description="Greedy tokens compared per locality prompt.")
    canaries: list[str] = Field(
        default_factory=list, description="Prompts checked for every batch in addition to the edits' own locality."
    )
    standing: Path | list[StandingFact] | None = Field(
        None,
        description="The standing facts: unset = the shipped set (editing/probes/standing.json), a JSON file "
        '({"facts": [{"prompt": …, "answer": …}]} or a bare list), or an inline JSON list; [] turns them off.',
    )
    max_standing_broken: int = Field(
        0, ge=0, description="Reject a batch when more than this many standing facts stop being answered right."
    )
    neighbours: int = Field(
        4, ge=0, le=32, description="Derived neighbour prompts per edit (its prompt, other subjects); 0 turns them off."
    )
    max_neighbours_changed: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Reject a batch when more than this share of its derived neighbours change their greedy answer "
        "(0: any one; measured on SmolLM2 in docs/benchmarks.md).",
    )
    neighbour_tokens: int = Field(
        3, ge=1, description="Leading greedy tokens decoded per derived neighbour (the answer, not the rest)."
    )
    neighbour_match: Literal["answer_word", "tokens"] = Field(
        "answer_word", description="When a derived neighbour counts as changed: its answer word (the first word "
        "that is not an article, case and punctuation ignored) differs, or ('tokens') any of its leading tokens "
        "does (measured in docs/benchmarks.md).",
    )


class LogConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    snapshot_every: int = Field(25, ge=1, description="Store a snapshot of the edited tensors every K revisions.")


class RateLimitConfig(BaseModel):
    """Per-key rate limits (a bucket per key holding a minute's worth); 0 turns one off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    edits_per_minute: int = Field(
        600, ge=0, description="Edits one key may submit per minute (a batch counts its edits; rollbacks and "
        "replays count one each)."
    )
    queries_per_minute: int = Field(6000, ge=0, description="Queries one key may send per minute.")


class WriterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_batch_edits: int = Field(
        16, ge=1, description="Most queued edits applied together as one revision (sequential batch editing)."
    )
    heartbeat_seconds: float = Field(2.0, gt=0, description="How often a worker announces itself.")


class QueryConfig(BaseModel):
    """How every worker batches queries: waiting queries at one revision run as one padded batch."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_batch: int = Field(16, ge=1, le=256, description="Most queries decoded together as one batch.")
    batch_wait_ms: float = Field(
        5.0, ge=0.0, le=1000.0,
        description="Once a query arrived, a worker waits this long (ms) for another, and again after each "
        "(at most ten times this in all), before running the batch.",
    )


class QueueConfig(BaseModel):
    """Knobs of the Redis transport: key prefix, writer lease, orphan claiming, query backpressure."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: str = Field(
        "fp", description="Prefix of every Redis key, so deployments (and tests) can share a server."
    )
    lease_ms: int = Field(
        10_000,
        ge=200,
        description="Writer lease time-to-live (ms); a standby takes over at most this long after a crash.",
    )
    claim_idle_ms: int = Field(
        300_000,
        ge=100,
        description="Idle time (ms) after which a command entry of a dead writer is adopted (XAUTOCLAIM); "
        "keep it well above the p99 edit time.",
    )
    max_query_backlog: int = Field(
        256, ge=1, description="Queries waiting for a worker; beyond it /v1/generate and /v1/score get 503."
    )
    commands_maxlen: int = Field(100_000, ge=100, description="Approximate cap of the commands stream.")
    reply_ttl_s: float = Field(60.0, gt=0, description="Seconds a query's unread reply key lives.")
    follow_seconds: float = Field(
        1.0, gt=0, description="How often a replica or standby checks the log without being woken."
    )

    @field_validator("prefix")
    @classmethod
    def _plain_prefix(cls, value: str) -> str:
        if not _PREFIX.match(value):
            raise ValueError("use 1-64 letters, digits, '_', '.', ':' or '-'")
        return value

    @property
    def renew_seconds(self) -> float:
        """How often the lease holder renews (three times per lease)."""
        return self.lease_ms / 3000.0

    @property
    def claim_every_seconds(self) -> float:
        """How often the writer looks for orphaned command entries."""
        return min(max(self.claim_idle_ms / 10_000.0, 0.5), 60.0)


class EnvKeyConfig(BaseModel):
    """A key given in `FACTPATCH_API_KEYS` with a name (the `actor` its requests record)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Role
    name: str | None = Field(None, description="Recorded as actor; default env-<first 8 hex of the key's sha256>.")


class Settings(BaseSettings):
    """The settings of every factpatch process. Unknown FACTPATCH_ variables are ignored."""

    model_config = SettingsConfigDict(
        env_prefix="FACTPATCH_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    model: str = Field(DEFAULT_MODEL, description="Hugging Face id, local folder, .gguf file, or the default alias.")
    data_dir: Path = Field(Path.home() / ".factpatch", description="Model cache, SQLite log and artifacts.")
    models_dir: Path | None = Field(None, description="Cache of downloaded/converted models; unset = data_dir/models.")
    editor: str | None = Field(
        None, description="Editor name; unset = the one the edit log was started with, else lemoe."
    )
    database_url: str | None = Field(None, description="sqlite:///path or postgresql://…; unset = SQLite in data_dir.")
    redis_url: str | None = Field(None, description="redis://…; unset = embedded mode (one process).")
    host: str = Field("127.0.0.1", description="Address `serve`/`api` listen on.")
    port: int = Field(8000, description="Port `serve`/`api` listen on.")
    device: str = Field("auto", description="auto (CUDA when present, else CPU), cpu, cuda, cuda:1, …")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Serving dtype; auto = bfloat16 on CUDA, float32 on CPU."
    )
    threads: int | None = Field(
        None, ge=1, le=1024,
        description="torch CPU threads of a serving process (`serve`, `worker`); unset = OMP_NUM_THREADS when "
        "set, else on CPU one fewer than the cores this process may use (at least 1), so HTTP, the queue and "
        "the clients keep a core; on CUDA torch's default.",
    )
    packed_linear: bool = Field(
        True,
        description="On CPU in float32, queries and the guard's probes run the linear layers with oneDNN on "
        "weights packed ahead (about 1.7x faster decoding of SmolLM2; one packed copy of each weight in memory, "
        "remade after an edit writes it); false = torch's default matmul.",
    )
    seed: int = Field(0, description="Seed for sampled generation and editor initialisation.")
    api_keys: dict[str, Role | EnvKeyConfig] = Field(
        default_factory=dict,
        description='Extra bearer keys, JSON: {"key": "operator"} or {"key": {"role": "editor", "name": "ci"}}; '
        "keys made with `factpatch keys create` live in the edit log's database.",
    )
    key_cache_seconds: float = Field(
        5.0, ge=0, description="How long an API process trusts a looked-up key (a revoked key works at most this long)."
    )
    query_timeout: float = Field(30.0, gt=0, description="Seconds a query waits for a worker.")
    worker_id: str | None = Field(None, description="Name of this worker; default host-pid.")
    metrics_port: int | None = Field(
        None, description="`factpatch worker` also serves its own /metrics on this port (the API's /metrics "
        "includes every worker's figures either way)."
    )
    log_level: str = Field("INFO", description="Logging level of the process.")
    log_format: Literal["text", "json"] = Field(
        "text", description="text, or json: one object per line with request_id, edit_id, revision, actor."
    )
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    rate_limits: RateLimitConfig = Field(default_factory=RateLimitConfig)
    guard: GuardConfig = Field(default_factory=GuardConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    writer: WriterConfig = Field(default_factory=WriterConfig)
    queue: QueueConfig = Field(default_factory=QueueConfig)
    queries: QueryConfig = Field(default_factory=QueryConfig)
    editors: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per-editor config overrides, e.g. FACTPATCH_EDITORS__FT__STEPS=8."
    )

    def model_cache(self) -> Path:
        return self.models_dir or self.data_dir / "models"

    def sqlite_path(self) -> Path:
        """The SQLite database file this configuration uses."""
        url = self.database_url
        if url is None:
            return self.data_dir / "log.sqlite3"
        if url.startswith("sqlite:///"):
            return Path(url.removeprefix("sqlite:///"))
        raise ValueError(f"not a SQLite URL: {url}")

    def uses_postgres(self) -> bool:
        return bool(self.database_url and self.database_url.startswith(("postgresql://", "postgres://")))

    def redacted(self) -> dict[str, Any]:
        """The effective configuration with secrets hidden, for the start-up log line."""
        data = self.model_dump(mode="json")
        data["api_keys"] = [f"***:{role if isinstance(role, str) else role.role}" for role in self.api_keys.values()]
        for key in ("database_url", "redis_url"):
            if data.get(key) and "@" in data[key]:
                scheme, rest = data[key].split("://", 1)
                data[key] = f"{scheme}://***@{rest.split('@', 1)[1]}"
        return data
