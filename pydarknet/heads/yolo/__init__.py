"""YOLOv3/v4/v7's `[yolo]` head: the layer, its box coder and output -> detections (the loss comes later)."""
