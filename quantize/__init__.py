"""Post-training quantization: calibration data, PT2E (XNNPACK, Core ML), ONNX Runtime QDQ, sensitivity."""
