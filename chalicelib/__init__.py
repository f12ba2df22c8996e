"""Campus service platform: the serverless backend of a university's WeCom+ service hall."""

__version__ = "0.1.0"
