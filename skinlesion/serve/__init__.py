"""`skinlesion serve`: the trained model (models/model.pt, or its ONNX export) behind HTTP on
127.0.0.1, computing what `skinlesion predict` computes (skinlesion.predict's decoding,
classifiers and records), for uploads one at a time and for many clients at once.

model.py holds the loaded model (its name, version and what its inputs must be); requests.py
turns a request's body into model inputs (an upload, or the Open Inference Protocol's JSON
tensors) and refuses what does not fit with a one-line reason; batching.py gathers concurrent
requests into one forward pass; metrics.py counts requests, errors, latencies and batch sizes
in Prometheus's text format; page.py is the upload page; app.py puts the routes together and
runs them with uvicorn. docs/serve.md describes the routes and limits.
"""
