"""LibroBot VLA serving: policy runtime (chunk execution, ensembling, real-time chunking), ONNX export and runtime, REST and gRPC servers, client."""

__version__ = "0.1.0"
