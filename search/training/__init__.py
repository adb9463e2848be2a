"""Training a candidate: the datasets and their checks, and the training loop with its
settings."""
