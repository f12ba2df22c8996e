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


# -- secrets from SSM Parameter Store (deployed stages) ---------------------------------------------
@pytest.fixture
def ssm(env):
    import boto3
    from moto import mock_aws

    env.setenv("AWS_DEFAULT_REGION", "cn-north-1")
    with mock_aws():
        client = boto3.client("ssm")
        for name, value in (("WECOM_SECRET", "from-ssm-wecom"), ("SESSION_SIGNING_KEY", "s" * 40),
                            ("NOT_A_SETTING", "ignored")):
            client.put_parameter(Name=f"/campus-platform/prod/{name}", Value=value, Type="SecureString")
        client.put_parameter(Name="/campus-platform/dev/WECOM_SECRET", Value="another-stage", Type="SecureString")
        yield client


@pytest.fixture(autouse=True)
def _fresh_secret_store(monkeypatch):
    import chalicelib.integrations.parameters as parameters_module
    import chalicelib.settings as settings_module

    monkeypatch.setattr(settings_module, "_stored", {})
    monkeypatch.setattr(parameters_module, "_provider", None)


def test_deployed_secrets_come_from_the_parameter_path(ssm, env):
    from chalicelib.settings import SECRET_FIELDS

    for name in SECRET_FIELDS:
        env.delenv(name.upper(), raising=False)
    env.setenv("SECRETS_PARAMETER_PATH", "/campus-platform/prod/")
    env.setenv("SESSION_SIGNING_KEY", "e" * 40)  # given in the environment: it wins
    settings = get_settings()
    assert settings.secret("wecom_secret") == "from-ssm-wecom"
    assert settings.secret("session_signing_key") == "e" * 40
    with pytest.raises(SettingsError, match="DOOR_WEBHOOK_SECRET"):  # not stored: the feature that needs it says so
        settings.secret("door_webhook_secret")
    assert "from-ssm-wecom" not in repr(settings)


def test_settings_without_secrets_need_no_parameter_store(env):
    env.setenv("SECRETS_PARAMETER_PATH", "/campus-platform/prod/")
    env.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing answers there, and nothing asks
    assert get_settings().stage == "dev" and get_settings().table_name("people") == "campus-dev-people"


def denied_parameter_store(env) -> None:
    """The provider's client answers every read with AccessDeniedException (no network involved)."""
    import boto3
    from aws_lambda_powertools.utilities.parameters import SSMProvider
    from botocore.stub import Stubber

    import chalicelib.integrations.parameters as parameters_module

    client = boto3.client("ssm", region_name="cn-north-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    stubber = Stubber(client)
    for _ in range(3):
        stubber.add_client_error("get_parameters_by_path", "AccessDeniedException", http_status_code=400)
    stubber.activate()
    env.setattr(parameters_module, "_provider", SSMProvider(boto3_client=client))


def test_an_unreadable_parameter_path_is_a_settings_error_naming_it(env):
    env.delenv("WECOM_SECRET", raising=False)
    env.setenv("SECRETS_PARAMETER_PATH", "/campus-platform/prod/")
    env.setenv("AWS_DEFAULT_REGION", "cn-north-1")
    denied_parameter_store(env)
    settings = get_settings()  # reading the settings needs no secret
    with pytest.raises(SettingsError, match="/campus-platform/prod/"):
        settings.secret("wecom_secret")
