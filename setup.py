from setuptools import find_packages, setup

setup(
    name="pydarknet",
    version="0.1.0",
    description="Darknet (YOLOv2 / YOLO9000) reimplemented in PyTorch, numerically faithful to the C original",
    packages=find_packages(include=["pydarknet", "pydarknet.*"]),
    python_requires=">=3.10",
    install_requires=["torch", "numpy", "opencv-python-headless", "jpeglib", "click", "tqdm", "matplotlib"],
    extras_require={"test": ["pytest", "hypothesis", "onnx", "onnxruntime"], "coco": ["pycocotools"],
                    "tga": ["pillow"], "onnx": ["onnx", "onnxruntime"]},
    entry_points={"console_scripts": ["pydarknet = pydarknet.cli:main"]},
)
