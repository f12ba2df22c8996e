"""The platform's structured logger (Powertools, JSON to stdout).

One logger for the whole app: handlers and jobs import ``logger`` from here. Request-scoped keys
(request id, route, user id) are added by the middleware in :mod:`chalicelib.api.middleware` with
the thread-safe variants, because the local server handles requests on several threads.
Never pass ID-card numbers, phone numbers, tokens or health values to it.
"""

from aws_lambda_powertools import Logger

SERVICE_NAME = "campus-platform"

logger = Logger(service=SERVICE_NAME)
