"""A trained model as a file that runs without this pipeline: `skinlesion export --format onnx`
writes it (skinlesion.export.onnx_graph, with torch), ONNX Runtime runs it
(skinlesion.predict.onnx_classifier, without torch); both need the optional extra `pip install ".[onnx]"`."""
