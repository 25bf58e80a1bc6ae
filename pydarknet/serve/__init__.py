"""Live results over HTTP: AlexeyAB's `-mjpeg_port` / `-json_port` streams and `pydarknet serve`.

`mjpeg` (`MjpegServer`: JPEG frames a browser shows), `json_stream` (`JsonStreamServer`, `detection_json`:
AlexeyAB's JSON objects), `app` (`DetectionServer`: the upload page and POST /detect), all over the one
streaming server of `stream`. Standard library only; every server binds 127.0.0.1 unless told otherwise.
"""
