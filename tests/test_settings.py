"""Settings from the environment: embedded defaults, and errors that name the variable."""

from __future__ import annotations

import base64

import pytest

from settings import Settings, SettingsError

KEY = base64.urlsafe_b64encode(bytes(32)).decode()


def test_embedded_defaults_generate_secrets_once(tmp_path):
    first = Settings.from_env({"DATA_DIR": str(tmp_path)})
    assert first.embedded_db and first.embedded_wechat and not first.redis_url
    assert first.db_url == f"sqlite://{tmp_path / 'referral.sqlite3'}"
    assert len(first.data_key) == 32 and len(first.lookup_key) == 32 and first.jwt_secret
    again = Settings.from_env({"DATA_DIR": str(tmp_path)})
    assert (again.data_key, again.lookup_key, again.jwt_secret) == (first.data_key, first.lookup_key,
                                                                     first.jwt_secret)


@pytest.mark.parametrize(("env", "variable"), [
    ({"PORT": "eighty"}, "PORT"),
    ({"PORT": "70000"}, "PORT"),
    ({"WECHAT_TIMEOUT": "soon"}, "WECHAT_TIMEOUT"),
    ({"SEED_DEMO": "perhaps"}, "SEED_DEMO"),
    ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
    ({"REDIS_URL": "http://x"}, "REDIS_URL"),
    ({"DATA_KEY": "short"}, "DATA_KEY"),
    ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
    ({"SLIP_IMAGE_URL_TTL": "0"}, "SLIP_IMAGE_URL_TTL"),
    ({"WECHAT_AES_KEY": "short"}, "WECHAT_AES_KEY"),
    ({"DATABASE_URL": "postgres://u@h/db"}, "JWT_SECRET"),
    ({"CHAT_CHECK_TIMEOUT": "0"}, "CHAT_CHECK_TIMEOUT"),
    ({"CHAT_NOTIFY_QUIET": "-5"}, "CHAT_NOTIFY_QUIET"),
    ({"REALTIME_TICKET_TTL": "3600"}, "REALTIME_TICKET_TTL"),
])
def test_wrong_values_name_the_variable(tmp_path, env, variable):
    with pytest.raises(SettingsError, match=variable) as raised:
        Settings.from_env({"DATA_DIR": str(tmp_path), **env})
    # In Chinese and in English, each naming the variable.
    error = raised.value
    assert variable in error.chinese and variable in error.english
    assert any("\u4e00" <= c <= "\u9fff" for c in error.chinese) and error.english.isascii()
    assert str(error) == f"{error.chinese} / {error.english}"


def test_production_settings(tmp_path):
    settings = Settings.from_env({"DATA_DIR": str(tmp_path), "DATABASE_URL": "postgres://u@h/db",
                                  "REDIS_URL": "redis://127.0.0.1:6379/0", "JWT_SECRET": "x" * 40,
                                  "DATA_KEY": KEY, "LOOKUP_KEY": KEY, "PORT": "9000", "SEED_DEMO": "yes"})
    assert not settings.embedded_db and settings.port == 9000 and settings.seed_demo is True
    assert settings.embedded_his is False, "no HIS simulator in production unless asked for"
    assert settings.data_key == bytes(32)
    assert not (tmp_path / "data.key").exists(), "production never writes generated keys"


def test_every_setting_is_documented_in_the_readme():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    from dataclasses import fields

    for f in fields(Settings):
        assert f"`{f.name.upper()}`" in readme, f"{f.name.upper()} missing from the README table"
