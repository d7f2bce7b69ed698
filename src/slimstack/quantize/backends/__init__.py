"""Quantization backends: slimstack's own torch int8 modules, and ONNX Runtime."""
