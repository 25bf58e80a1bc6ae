"""Names a user picks among, read by the API and by the CLI's options (this module imports no torch)."""

# InferenceNetwork: float32 (Darknet's numbers), bfloat16 trunk, int8 trunk (calibrated), the fastest here
PRECISIONS = ("fp32", "bf16", "int8", "fast")
BACKENDS = ("torch", "onnxruntime", "openvino")  # InferenceNetwork: what runs the fused net
DECODERS = ("stb", "opencv")         # load_image: stb_image-exact (Darknet's pixels) or OpenCV's libjpeg
DARKNET_BUILDS = ("gpu", "cpu")     # Darknet.darknet_build: whose numbers (GPU/cuDNN or stock CPU build)
# DIVERGES: training decodes with OpenCV unless asked otherwise: the stb-exact decoder is 1.4-2.5x slower
# per augmented sample on images above 416x416, and the random crops make exact pixels moot there
TRAINING_DECODER = "opencv"
