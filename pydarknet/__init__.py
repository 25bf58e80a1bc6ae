"""pydarknet: Darknet (YOLOv2 / YOLO9000) in PyTorch, faithful to the C original's numbers.

The top-level names are imported lazily, so that `pydarknet.cfg` (pure data) needs no torch.
"""
from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "Darknet": "network", "load_network": "network", "select_device": "network",
    "load_weights": "weights", "save_weights": "weights",
    "detect": "predict", "detect_boxes": "predict", "classify": "predict",
    "DetectedObject": "detections", "Detection": "detections", "Prediction": "predict",
    "read_cfg": "cfg", "read_names": "data.files", "WordTree": "tree",
    "load_inference_network": "inference", "export_onnx": "export",
    "train_step": "engine.step", "DarknetSGD": "engine.sgd",
    "DarknetError": "errors",
    "yolo_loss": "heads.yolo.loss", "YoloLoss": "heads.yolo.loss",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'pydarknet' has no attribute '{name}'")
