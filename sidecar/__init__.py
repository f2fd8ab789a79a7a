"""parameters-secrets-sidecar: a local HTTP cache for AWS parameters and secrets."""

__version__ = "0.1.0"
NAME = "parameters-secrets-sidecar"
