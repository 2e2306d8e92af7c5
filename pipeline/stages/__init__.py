"""The curation stages, one module each, in run order in pipeline.plan."""
