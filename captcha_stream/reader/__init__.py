"""From a checkpoint to text: reader stages, building them, reading (Recognizer), ONNX."""
