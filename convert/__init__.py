"""Converters to Core ML, ExecuTorch and ONNX, sharing one verify/manifest pipeline."""
