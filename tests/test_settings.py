"""Configuration: shipped defaults, overrides from files and environment, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from crmstream.settings import ConfigError, load_offer_catalogue, load_settings


def test_shipped_defaults_are_valid() -> None:
    settings = load_settings()
    assert settings.kafka.topics.transactions == "crm.transactions"
    assert settings.alerts.churn_exit < settings.alerts.churn_enter
    assert "savings" in load_offer_catalogue(settings.models.catalogue_path()).offers


def test_environment_overrides_nested_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRMSTREAM_KAFKA__TOPICS__PARTITIONS", "12")
    monkeypatch.setenv("CRMSTREAM_REDIS__URL", "rediss://cache.internal:6380/2")
    settings = load_settings()
    assert settings.kafka.topics.partitions == 12
    assert settings.kafka.topics.customers == "crm.customers"  # untouched keys keep defaults
    assert settings.redis.url == "rediss://cache.internal:6380/2"


def test_config_file_overrides_a_subset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "prod.toml"
    config.write_text(
        '[alerts]\nchurn_enter = 0.8\n[kafka]\nbootstrap_servers = "k1:9092,k2:9092"\n'
    )
    monkeypatch.setenv("CRMSTREAM_CONFIG", str(config))
    settings = load_settings()
    assert settings.alerts.churn_enter == 0.8
    assert settings.alerts.churn_exit == 0.55
    assert settings.kafka.client_config()["bootstrap.servers"] == "k1:9092,k2:9092"


def test_errors_name_the_bad_key_and_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRMSTREAM_ENGINE__MODEL_SHARDS", "zero")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "engine.model_shards" in message and "CRMSTREAM_ENGINE__MODEL_SHARDS" in message


def test_unknown_keys_are_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "typo.toml"
    config.write_text("[alerts]\nchurn_entre = 0.8\n")
    monkeypatch.setenv("CRMSTREAM_CONFIG", str(config))
    with pytest.raises(ConfigError, match=r"alerts\.churn_entre"):
        load_settings()


def test_missing_config_file_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRMSTREAM_CONFIG", "/nonexistent/crm.toml")
    with pytest.raises(ConfigError, match="not a file"):
        load_settings()


def test_hysteresis_band_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRMSTREAM_ALERTS__CHURN_EXIT", "0.9")
    with pytest.raises(ConfigError, match="churn_exit must be below churn_enter"):
        load_settings()


def test_security_options_pass_through_and_secrets_come_from_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "kafka-password"
    secret.write_text("s3cret\n")
    monkeypatch.setenv("CRMSTREAM_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("CRMSTREAM_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("CRMSTREAM_KAFKA__SASL_USERNAME", "crmstream")
    monkeypatch.setenv("CRMSTREAM_KAFKA__SASL_PASSWORD_FILE", str(secret))
    monkeypatch.setenv("CRMSTREAM_KAFKA__SSL_CA_LOCATION", "/etc/ssl/ca.pem")
    monkeypatch.setenv("CRMSTREAM_REDIS__USERNAME", "crm-engine")
    monkeypatch.setenv("CRMSTREAM_REDIS__PASSWORD", "r3dis")
    settings = load_settings()
    config = settings.kafka.client_config()
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.mechanism"] == "SCRAM-SHA-512"
    assert config["sasl.password"] == "s3cret"
    assert config["ssl.ca.location"] == "/etc/ssl/ca.pem"
    assert settings.redis.password.get_secret_value() == "r3dis"
    assert "s3cret" not in repr(settings) and "r3dis" not in repr(settings)


def test_sasl_without_mechanism_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRMSTREAM_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(ConfigError, match="sasl_mechanism"):
        load_settings()


def test_the_anomaly_feedback_weight_is_a_share(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRMSTREAM_MODELS__ANOMALY_FEEDBACK_WEIGHT", "1.5")
    with pytest.raises(ConfigError, match=r"models\.anomaly_feedback_weight"):
        load_settings()
