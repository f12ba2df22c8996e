"""Test-only helpers and a test-only Chalice project (never deployed)."""
