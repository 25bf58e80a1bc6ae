"""YOLOv2's `[region]` head: the layer, its box coder, output -> detections, and its training loss."""
