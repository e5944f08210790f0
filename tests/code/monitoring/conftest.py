"""Scoring is tested against a real MLflow store: the registry tests' store, builder and gate
files, on the embedded store and on a shared server alike."""

from tests.code.registry.conftest import builder, files, pytest_generate_tests, store  # noqa: F401
