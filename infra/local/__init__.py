"""The local stack behind ``make run``: moto, the API, SQS pollers, the scheduler, the demo campus."""
