"""Thin Prefect orchestration over the pipeline stages."""

import os

# Set before Prefect reads its settings; a user's own values win.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Prefect's 20 s for its ephemeral server to start is too short on a loaded 2-core machine.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
# Models and datasets come from local files unless the user allows the hub (HF_HUB_OFFLINE=0), for every
# entry point: the CLI, and flows a Prefect worker imports.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
