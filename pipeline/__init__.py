"""The work of winnow: one module per stage, no Prefect imports."""
