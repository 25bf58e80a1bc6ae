"""Names a user picks among, read by the API and by the CLI's options (this module imports no torch)."""

PRECISIONS = ("fp32", "bf16")        # InferenceNetwork: float32 (Darknet's numbers) or bfloat16 trunk
BACKENDS = ("torch", "onnxruntime", "openvino")  # InferenceNetwork: what runs the fused net
