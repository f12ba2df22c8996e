"""Deployment and local-stack tooling. Never packaged into the Lambda zip."""
