"""The classifier: backbones and weights, the model file, devices, batched inference."""
