"""Evaluation and explanation: metrics, the test report, Grad-CAM."""
