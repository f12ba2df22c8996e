"""Clients for the outside world (WeCom, door gateways, SQS): the only layer using requests or SQS."""
