"""The SFT stage: data, model loading, trainer setup and the training run."""
