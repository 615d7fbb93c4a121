"""The DVC stages: one module per stage in dvc.yaml, each a short main() over the skinlesion library."""
