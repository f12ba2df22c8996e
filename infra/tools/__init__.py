"""Command-line tools for operators (run from the project root with the dev requirements)."""
