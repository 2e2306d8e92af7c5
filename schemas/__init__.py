"""Pydantic models: input records, configuration, ledger columns."""
