"""vireid.export: checkpoint -> ONNX -> FP16 ONNX -> TensorRT engine, each step verified."""
