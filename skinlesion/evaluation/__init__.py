"""Evaluation and explanation: metrics, the test report, subgroups, comparisons of runs, Grad-CAM."""
