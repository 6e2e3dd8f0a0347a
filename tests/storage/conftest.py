"""Storage tests use the session servers of tests/conftest.py (moto, Azurite)."""
