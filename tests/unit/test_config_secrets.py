"""Secret settings (API keys, Milvus token, URL passwords) never leave the process in clear, except in a
child process's owner-only settings file."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from twinstream.config import SettingsError, load_settings

API_KEY = "sk-live-4f9c2d7e"
TOKEN = "root:milvus-secret"
REDIS_PASSWORD = "redis-secret"
SECRETS = (API_KEY, TOKEN, "milvus-secret", REDIS_PASSWORD)


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWINSTREAM_SERVE__API_KEYS", json.dumps({API_KEY: "acme"}))
    monkeypatch.setenv("TWINSTREAM_MILVUS__TOKEN", TOKEN)
    monkeypatch.setenv("TWINSTREAM_REDIS__URL", f"redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0")


def _leaks(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret.lower() in text.lower()]  # variable names are upper


def test_twinstream_settings_prints_no_secret(secret_env: None) -> None:
    from cli.main import app

    result = CliRunner().invoke(app, ["settings"])
    assert result.exit_code == 0, result.output
    assert _leaks(result.output) == []
    shown = json.loads(result.output)
    assert shown["serve"]["api_keys"] == {"**********1": "acme"}  # which tenants have keys: still visible
    assert shown["milvus"]["token"] == "**********"
    assert shown["redis"]["url"] == "redis://:**********@127.0.0.1:6379/0"


def test_reprs_and_dumps_mask_every_secret(secret_env: None) -> None:
    settings = load_settings()
    assert _leaks(repr(settings)) == [] and _leaks(str(settings)) == []
    assert _leaks(settings.model_dump_json()) == [] and _leaks(str(settings.model_dump())) == []
    assert settings.serve.api_keys == {API_KEY: "acme"}  # the process itself still has them
    assert settings.milvus.token.get_secret_value() == TOKEN


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TWINSTREAM_SERVE__API_KEYS", json.dumps({API_KEY: 5})),  # the key is part of the error's location
        ("TWINSTREAM_SERVE__API_KEYS", json.dumps([API_KEY])),
        ("TWINSTREAM_MILVUS__TOKN", TOKEN),  # a misspelt secret variable is still a secret
        ("TWINSTREAM_MILVUS", json.dumps({"token": TOKEN, "port": "x"})),
        ("TWINSTREAM_MILVUS", json.dumps({"token": TOKEN}) + "}"),  # JSON that does not parse
        ("TWINSTREAM_REDIS__URL", f"redis://:{REDIS_PASSWORD}@127.0.0.1:{'9' * 70}"),
    ],
    ids=["key-bad-tenant", "keys-not-a-map", "misspelt-token", "group-json", "broken-json", "url"],
)
def test_a_settings_error_never_echoes_a_secret(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    monkeypatch.setenv("TWINSTREAM_KAFKA__PARTITIONS", "zero")  # an ordinary error beside it
    try:
        settings = load_settings()
    except SettingsError as exc:
        text = str(exc)
    else:
        text = repr(settings)  # the URL is valid as a string: then its repr must not leak either
    assert _leaks(text) == []
    assert "TWINSTREAM_" in text or "RedisSettings" in text


def test_an_ordinary_invalid_value_is_still_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWINSTREAM_KAFKA__PARTITIONS", "zero")
    with pytest.raises(SettingsError, match=r"TWINSTREAM_KAFKA__PARTITIONS: .*\(got 'zero'\)"):
        load_settings()


def test_a_masked_dump_fed_back_as_settings_is_refused(secret_env: None) -> None:
    masked = json.loads(load_settings().model_dump_json())
    with pytest.raises(SettingsError, match="masked placeholder"):
        load_settings(**masked)


def test_a_child_settings_file_is_owner_only_and_round_trips_the_secrets(
    secret_env: None, tmp_path: Path
) -> None:
    from twinstream.config import write_settings_file

    settings = load_settings()
    path = tmp_path / "settings.json"
    path.write_text("{}")
    path.chmod(0o644)  # an older, world-readable file is tightened too
    write_settings_file(settings, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_settings(**json.loads(path.read_text()))
    assert again.serve.api_keys == {API_KEY: "acme"}
    assert again.milvus.token.get_secret_value() == TOKEN
    assert again.redis.url == settings.redis.url


def test_the_demo_gives_its_workers_an_owner_only_settings_file(secret_env: None, tmp_path: Path) -> None:
    from cli.demo.run import start_ingest

    assert start_ingest(load_settings(), tmp_path, workers=0) == []
    path = tmp_path / "demo" / "settings.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert API_KEY in path.read_text()  # in clear here, and only here: the workers need it
