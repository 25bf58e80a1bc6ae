"""YOLOv3's `[yolo]` head: the layer (decode, detections and loss come with the zoo issues)."""
