"""PynamoDB models and repositories: the only layer that talks to DynamoDB."""
