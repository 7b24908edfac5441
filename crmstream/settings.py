"""All configuration in one place.

Defaults ship in `config/crmstream.toml`. A deployment points `CRMSTREAM_CONFIG` at its own
TOML file (same shape, any subset of keys) and/or overrides single keys with environment
variables named `CRMSTREAM_<SECTION>__<KEY>`, e.g. `CRMSTREAM_REDIS__URL` or
`CRMSTREAM_ALERTS__CHURN_ENTER`. Secrets may also be read from files: any `*_FILE`
variable such as `CRMSTREAM_REDIS__PASSWORD_FILE` names a file holding the value.
Everything is validated at start; an error names the bad key and what it should be.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = PROJECT_ROOT / "config"
DEFAULT_CONFIG = CONFIG_DIR / "crmstream.toml"
ENV_PREFIX = "CRMSTREAM_"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Topics(Section):
    transactions: str
    interactions: str
    outcomes: str
    customers: str
    dead_letter: str
    partitions: PositiveInt
    replication_factor: PositiveInt

    def inputs(self) -> dict[str, str]:
        """Input kind (`transactions`, ...) by topic name."""
        return {
            self.transactions: "transactions",
            self.interactions: "interactions",
            self.outcomes: "outcomes",
            self.customers: "customers",
        }


class Kafka(Section):
    bootstrap_servers: str = Field(
        description="host:port list; empty means: start a local development broker"
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
    sasl_mechanism: Literal["", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]
    sasl_username: str
    sasl_password: SecretStr
    ssl_ca_location: str
    ssl_certificate_location: str
    ssl_key_location: str
    extra: dict[str, str] = Field(description="any other librdkafka property, passed through")
    batch_size: PositiveInt
    topics: Topics

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> Kafka:
        if self.security_protocol.startswith("SASL") and not self.sasl_mechanism:
            raise ValueError("security_protocol SASL_* needs kafka.sasl_mechanism")
        return self

    def client_config(self) -> dict[str, str]:
        """librdkafka properties shared by every consumer, producer and admin client."""
        config = {"bootstrap.servers": self.bootstrap_servers}
        config["security.protocol"] = self.security_protocol
        if self.sasl_mechanism:
            config["sasl.mechanism"] = self.sasl_mechanism
            config["sasl.username"] = self.sasl_username
            config["sasl.password"] = self.sasl_password.get_secret_value()
        for key, value in (
            ("ssl.ca.location", self.ssl_ca_location),
            ("ssl.certificate.location", self.ssl_certificate_location),
            ("ssl.key.location", self.ssl_key_location),
        ):
            if value:
                config[key] = value
        config.update(self.extra)
        return config


class Redis(Section):
    url: str = Field(description="redis:// or rediss:// (TLS) URL")
    username: str
    password: SecretStr
    ssl_ca_certs: str
    key_prefix: str
    profile_ttl_seconds: PositiveInt
    alert_stream_maxlen: PositiveInt
    rm_stream_maxlen: PositiveInt
    alert_dedupe_ttl_seconds: PositiveInt
    retry_attempts: PositiveInt
    retry_backoff_base_seconds: PositiveFloat
    retry_backoff_cap_seconds: PositiveFloat
    socket_timeout_seconds: PositiveFloat


class Engine(Section):
    allowed_lateness_seconds: PositiveInt
    model_shards: PositiveInt
    max_amount: PositiveFloat
    duplicate_memory: PositiveInt = Field(
        description="recent event ids remembered per customer to apply each once"
    )
    pending_unknown_customer: PositiveInt = Field(
        description="events held per customer while its reference record has not arrived"
    )
    unknown_customer_grace_seconds: PositiveInt
    evict_closed_after_hours: PositiveFloat = Field(
        description="wall-clock time a closed customer's state is kept after its last event"
    )
    compact_idle_after_days: PositiveFloat = Field(
        description="wall-clock silence after which a customer's window log is dropped"
    )
    max_record_bytes: PositiveInt
    recovery_dir: str = Field(description="recovery store directory; empty = no recovery")
    recovery_partitions: PositiveInt = Field(
        description="partitions of a new recovery store: as many as the most workers you will run"
    )
    snapshot_interval_seconds: PositiveFloat


class Bank(Section):
    own_bank_code: str
    base_currency: str
    fx_rates: dict[str, PositiveFloat]

    @model_validator(mode="after")
    def _base_currency_has_rate(self) -> Bank:
        if self.fx_rates.get(self.base_currency) != 1.0:
            raise ValueError(f"fx_rates must map base_currency {self.base_currency} to 1.0")
        return self


class Lifecycle(Section):
    new_customer_days: PositiveInt
    dormant_after_days: PositiveInt
    growing_inflow_ratio: PositiveFloat
    segment_tier_floor: dict[str, str] = Field(
        description="segment -> lowest value tier its customers get, whatever their inflows"
    )
    value_tiers: dict[str, float] = Field(
        description="tier name -> minimum 30-day inflow (base currency), highest first"
    )

    @model_validator(mode="after")
    def _floors_are_tiers(self) -> Lifecycle:
        unknown = set(self.segment_tier_floor.values()) - set(self.value_tiers)
        if unknown:
            raise ValueError(f"segment_tier_floor names unknown tiers {sorted(unknown)}")
        return self


class Alerts(Section):
    churn_enter: float = Field(ge=0, le=1)
    churn_exit: float = Field(ge=0, le=1)
    suspicious_budget: float = Field(
        gt=0, lt=1, description="share of transactions allowed to raise suspicious alerts"
    )

    @property
    def suspicious_rank(self) -> float:
        """Calibrated anomaly rank from which a transaction is suspicious."""
        return 1.0 - self.suspicious_budget

    suspicious_min_amount: float = Field(ge=0)
    large_inflow_amount: PositiveFloat
    large_outflow_amount: PositiveFloat
    high_value_tiers: list[str]
    cooldown_seconds: dict[str, PositiveInt]

    @model_validator(mode="after")
    def _hysteresis(self) -> Alerts:
        if self.churn_exit >= self.churn_enter:
            raise ValueError("churn_exit must be below churn_enter (hysteresis band)")
        return self


class Rules(Section):
    """Hard rules beside the anomaly model, each raising a suspicious alert with its code."""

    card_testing_min_payments: PositiveInt = Field(
        description="card payments of at most card_testing_max_amount within an hour"
    )
    card_testing_max_amount: PositiveFloat
    takeover_window_hours: PositiveFloat = Field(
        description="online payment from a new device and country this soon after a password reset"
    )
    takeover_min_amount: PositiveFloat


class ContactPolicy(Section):
    """How often and when a customer may be offered anything, on any channel."""

    max_impressions_per_week: PositiveInt
    max_impressions_per_channel_per_week: PositiveInt
    decline_cooldown_days: PositiveInt
    complaint_suppression_days: PositiveInt
    fraud_review_days: PositiveInt
    exploration: float = Field(
        ge=0, lt=1, description="share of decisions that explore uniformly among eligible offers"
    )


class Models(Section):
    churn: str = Field(description="name in online_models.registry")
    anomaly: str
    offers: str
    churn_horizon_days: PositiveInt
    churn_snapshot_every_hours: PositiveInt
    churn_ledger_size: PositiveInt
    anomaly_hold_candidates: bool = Field(
        description="hold the most unusual transactions back from the detector until their "
        "verdict, so confirmed fraud is never learned as normal"
    )
    anomaly_feedback_weight: float = Field(
        ge=0.0,
        le=1.0,
        description="share of the supervised re-ranker (trained on verdicts) in the anomaly "
        "rank once it is warm; 0 ranks by the detector alone",
    )
    offer_catalogue: str = Field(
        description="offer catalogue TOML, relative to config/ or absolute"
    )
    seed: int

    def catalogue_path(self) -> Path:
        path = Path(self.offer_catalogue)
        return path if path.is_absolute() else CONFIG_DIR / path


class Offer(Section):
    product: str
    kind: Literal["cross_sell", "retention"]
    value: PositiveFloat
    weight: PositiveFloat
    segments: list[str]
    channels: list[str]
    consent: bool
    min_age: int | None = None
    max_age: int | None = None


class OfferCatalogue(Section):
    offers: dict[str, Offer]


def load_offer_catalogue(path: Path) -> OfferCatalogue:
    """Read and validate the offer catalogue (TOML); errors name the offer and key."""
    import tomllib

    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"models.offer_catalogue: cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"models.offer_catalogue: {path} is not valid TOML: {exc}") from None
    try:
        return OfferCatalogue.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            describe_validation_error(exc).replace(
                "invalid configuration", f"invalid offer catalogue {path}"
            )
        ) from None


class Metrics(Section):
    port: int = Field(ge=0, le=65535, description="process i listens on port + i; 0 = off")
    host: str


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    kafka: Kafka
    redis: Redis
    engine: Engine
    bank: Bank
    lifecycle: Lifecycle
    alerts: Alerts
    rules: Rules
    contact_policy: ContactPolicy
    models: Models
    metrics: Metrics

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        files = [DEFAULT_CONFIG]
        if extra := os.environ.get(f"{ENV_PREFIX}CONFIG"):
            files.append(Path(extra))
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=files, deep_merge=True),
        )


class ConfigError(Exception):
    """Configuration is invalid; the message names each bad key."""


def _secrets_from_files(environ: dict[str, str]) -> dict[str, str]:
    """Resolve `CRMSTREAM_..._FILE` variables into the values they point at."""
    resolved: dict[str, str] = {}
    for name, path in environ.items():
        if (
            name.startswith(ENV_PREFIX)
            and name.endswith("_FILE")
            and name != f"{ENV_PREFIX}CONFIG_FILE"
        ):
            try:
                resolved[name.removesuffix("_FILE")] = Path(path).read_text().strip()
            except OSError as exc:
                raise ConfigError(
                    f"{name}: cannot read secret file {path!r}: {exc.strerror}"
                ) from exc
    return resolved


def load_settings(**overrides: Any) -> Settings:
    """Load and validate settings; raise ConfigError naming every bad key."""
    config_path = os.environ.get(f"{ENV_PREFIX}CONFIG")
    if config_path and not Path(config_path).is_file():
        raise ConfigError(
            f"{ENV_PREFIX}CONFIG points at {config_path!r}, which is not a file; "
            "fix the path or unset the variable to use the shipped defaults"
        )
    secrets = _secrets_from_files(dict(os.environ))
    # The environment source sees the secrets' values in place of their *_FILE names.
    changed = {name: os.environ.get(name) for name in secrets}
    changed.update({f"{name}_FILE": os.environ[f"{name}_FILE"] for name in secrets})
    for name in secrets:
        del os.environ[f"{name}_FILE"]
    os.environ.update(secrets)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
    finally:
        for name, value in changed.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def describe_validation_error(exc: ValidationError) -> str:
    lines = ["invalid configuration:"]
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        env_name = ENV_PREFIX + "__".join(str(part) for part in error["loc"]).upper()
        given = error.get("input")
        secret = any(word in key for word in ("password", "secret", "token"))
        shown = "" if isinstance(given, dict) or secret else f" (got {given!r})"
        lines.append(f"  {key}: {error['msg']}{shown}  [file key {key} or env {env_name}]")
    return "\n".join(lines)
