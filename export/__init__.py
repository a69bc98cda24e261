"""Checkpoint -> deployable ONNX (fp32, fp16, int8). Run as `python -m export.onnx`."""
