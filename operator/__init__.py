"""modeldeploy: a Kubernetes operator that optimizes, serves and canaries ML models."""

__version__ = "0.1.0"
