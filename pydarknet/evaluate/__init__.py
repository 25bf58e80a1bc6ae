"""Evaluation of trained nets: Darknet's `detector valid | recall | map | demo` and `classifier valid`.

One module per job: `detect_list` (a net over a list of images), `results` (`detector valid` result
files), `scoring` (mAP inputs and recall), `metrics` (AP maths, the map report, pycocotools; numpy
only), `alexeyab_map` (AlexeyAB's `detector map` matching and report; numpy
only), `video` (`detector demo`), `classifier` (top-k accuracy). The public names of every module are
importable from here; they are loaded on first use, so `metrics` alone needs no torch.
"""
from importlib import import_module

_MODULES = {
    "metrics": ("ALL_POINTS", "FALSE_POSITIVE", "IGNORED", "TRUE_POSITIVE", "CocoAP", "Detections", "EvalResult",
                "GroundTruth", "average_precision", "coco_ap",
               "evaluate_detections", "format_map_report", "match_detections", "precision_recall_curve"),
    "detect_list": ("DEFAULT_BATCH", "DEFAULT_WORKERS", "ImageDetections", "detect_images", "ordered_map",
                    "scored_probs", "valid_paths"),
    "alexeyab_map": ("AlexeyABMap", "evaluate_map"),
    "results": ("DEFAULT_OUTFILES", "IMAGENET_CLASSES", "ValidSetup", "box_corners", "coco_lines", "image_id",
                "imagenet_lines", "validate_detector", "voc_lines"),
    "scoring": ("MapInputs", "MissingLabelWarning", "RECALL_IOU", "RECALL_LIST", "RECALL_NMS", "RECALL_THRESH",
               "RecallStats", "collect_map_inputs", "compute_map", "detection_records", "validate_detector_recall"),
    "video": ("DEMO_FALLBACK_FPS", "DEMO_FRAMES", "DEMO_NMS", "DemoStats", "annotate_video"),
    "classifier": ("ClassifierAccuracy", "VALID_BATCH", "leaf_mask", "validate_classifier"),
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'pydarknet.evaluate' has no attribute '{name}'")
