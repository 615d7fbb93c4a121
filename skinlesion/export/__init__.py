"""A trained model as a file that runs without this pipeline: `skinlesion export --format onnx`
writes it (skinlesion.export.onnx_graph, with torch), ONNX Runtime runs it
(skinlesion.export.runtime, without torch); both need the optional extra `pip install ".[onnx]"`."""
