"""SSM Parameter Store: the deployed stages' secrets (SecureStrings under one path).

The one client is Powertools' SSM provider, built on first use with timeouts that fit a request.
"""

from __future__ import annotations

from typing import Any

_provider: Any = None


class ParameterStoreError(Exception):
    """The parameters could not be read (denied, throttled, unreachable); names no value."""


def parameters_under(path: str) -> dict[str, str]:
    """Every parameter under ``path``, decrypted, by its name relative to the path (one
    GetParametersByPath, paged by the provider).

    Raises:
        ParameterStoreError: the read failed (its message names only the failure's type).
    """
    try:
        values = _ssm().get_multiple(path, decrypt=True, max_age=0)
    except Exception as exc:  # noqa: BLE001 - any failure means the same to the caller
        raise ParameterStoreError(type(exc.__cause__ or exc).__name__) from None
    return {str(name): str(value) for name, value in values.items()}


def _ssm() -> Any:
    global _provider
    if _provider is None:
        from aws_lambda_powertools.utilities.parameters import SSMProvider
        from botocore.config import Config

        _provider = SSMProvider(boto_config=Config(connect_timeout=2, read_timeout=3,
                                                   retries={"mode": "adaptive", "max_attempts": 3}))
    return _provider
