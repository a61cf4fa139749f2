"""Settings: loopback defaults, nested environment overrides, and clear errors for invalid values."""

from __future__ import annotations

import pytest

from twinstream.config import Settings, SettingsError, load_settings


def test_defaults_point_at_the_local_stack_on_loopback():
    s = Settings()
    assert s.kafka.bootstrap.startswith("127.0.0.1:")
    assert s.redis.url.startswith("redis://127.0.0.1:")
    assert s.milvus.uri.startswith("http://127.0.0.1:")
    assert s.kafka.images_topic == "twinstream.images"
    assert s.ingest.group_id == "twinstream-ingest"


def test_nested_groups_are_set_with_double_underscore(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TWINSTREAM_KAFKA__BOOTSTRAP", "broker:9092")
    monkeypatch.setenv("TWINSTREAM_SERVE__MAX_BATCH_SIZE", "64")
    monkeypatch.setenv("TWINSTREAM_SERVE__API_KEYS", '{"k1": "tenant-a"}')
    s = load_settings()
    assert s.kafka.bootstrap == "broker:9092"
    assert s.serve.max_batch_size == 64
    assert s.serve.api_keys == {"k1": "tenant-a"}


def test_an_invalid_value_names_the_environment_variable(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TWINSTREAM_KAFKA__PARTITIONS", "zero")
    monkeypatch.setenv("TWINSTREAM_REDIS__PORT", "70000")
    with pytest.raises(SettingsError) as err:
        load_settings()
    text = str(err.value)
    assert "TWINSTREAM_KAFKA__PARTITIONS" in text
    assert "TWINSTREAM_REDIS__PORT" in text


def test_an_unknown_setting_is_refused():
    with pytest.raises(SettingsError, match="TWINSTREAM_KAFKA__BOOTSTRAPP"):
        load_settings(kafka={"bootstrapp": "x"})


def test_data_dir_overrides_the_shared_datasets_path(monkeypatch: pytest.MonkeyPatch, tmp_path):
    monkeypatch.setenv("TWINSTREAM_DATA_DIR", str(tmp_path))
    assert load_settings().datasets_dir == tmp_path
