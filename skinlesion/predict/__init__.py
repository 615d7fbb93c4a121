"""Predicting new dermoscopy images with a trained model: the library behind `skinlesion
predict` (skinlesion/cli.py owns its arguments and what it prints).

inputs.py finds the images (files, folders, zip archives read in place), decodes them as
prepare-split does and gathers their metadata; torch_classifier.py (a model file, through
torch, with cam.py's Grad-CAM overlays) and onnx_classifier.py (its export, through ONNX
Runtime, without importing torch) classify them; records.py holds one image's result, a
Prediction or a Failure; outputs.py writes the results table and the ISIC 2019 submission as
results come; run.py plans a run (which images remain after an interrupted one) and yields
its results batch by batch.
"""
