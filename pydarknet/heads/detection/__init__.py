"""YOLOv1's `[detection]` head: the layer, its box coder and output -> detections (its loss is still to come)."""
