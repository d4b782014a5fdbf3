"""vertex-tuning-reconciler: declarative plan/apply for Vertex AI supervised tuning jobs."""

__version__ = "0.1.0"
