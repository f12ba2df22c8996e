"""Settings: typed, read lazily, loud when something is missing."""

import pytest

from chalicelib.settings import SettingsError, get_settings


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("STAGE", "dev")
    monkeypatch.setenv("TABLE_PREFIX", "campus-dev-")
    monkeypatch.delenv("CAMPUS_TIMEZONE", raising=False)
    return monkeypatch


def test_given_stage_variables_then_settings_are_typed_and_names_are_prefixed(env):
    settings = get_settings()
    assert settings.stage == "dev"
    assert settings.table_name("people") == "campus-dev-people"
    assert str(settings.tz) == "Asia/Shanghai"
    assert not settings.is_local


def test_given_the_environment_changes_then_the_next_read_sees_it(env):
    assert get_settings().stage == "dev"
    env.setenv("STAGE", "prod")
    assert get_settings().stage == "prod"


def test_given_the_same_environment_then_the_same_object_is_returned(env):
    assert get_settings() is get_settings()


@pytest.mark.parametrize(
    ("name", "value", "mentioned"),
    [
        ("STAGE", None, "STAGE"),
        ("STAGE", "staging", "STAGE"),
        ("TABLE_PREFIX", None, "TABLE_PREFIX"),
        ("TABLE_PREFIX", "bad prefix!", "TABLE_PREFIX"),
        ("CAMPUS_TIMEZONE", "Mars/Olympus", "CAMPUS_TIMEZONE"),
    ],
)
def test_given_a_missing_or_bad_variable_then_the_error_names_it(env, name, value, mentioned):
    if value is None:
        env.delenv(name)
    else:
        env.setenv(name, value)
    with pytest.raises(SettingsError) as raised:
        get_settings()
    assert mentioned in str(raised.value)
