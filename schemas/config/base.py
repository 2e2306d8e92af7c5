"""What every config section shares: frozen, unknown keys an error, and the one error type."""

from pydantic import BaseModel, ConfigDict


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the field."""


class Section(BaseModel):
    """Base for section configs: frozen, and unknown keys are an error (typos must not pass)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
