"""Time OpenCV DNN forwards of a Darknet net on request; runs in the OpenCV 4.x environment.

OpenCV 5 dropped `cv2.dnn.readNetFromDarknet`, so this script runs under the interpreter of an
isolated virtualenv with opencv-python-headless<5 (see opencv_dnn.py), as a child process of the
benchmark. It imports only cv2 and numpy. Protocol, one line each way:

    argv:  CFG WEIGHTS THREADS          -> prints "ready <cv2 version>"
    stdin: "<batch> <height> <width>"   -> prints the seconds of one `net.forward()` on that input
"""
import sys
import time

import cv2
import numpy as np


def main() -> None:
    cfg, weights, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    cv2.setNumThreads(threads)
    net = cv2.dnn.readNetFromDarknet(cfg, weights)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    rng = np.random.default_rng(0)
    print("ready", cv2.__version__, flush=True)
    for line in sys.stdin:
        batch, height, width = (int(v) for v in line.split())
        # a fresh setInput per call, outside the timed part, as pydarknet's input is prepared outside too
        net.setInput(rng.random((batch, 3, height, width), dtype=np.float32))
        start = time.perf_counter()
        net.forward()
        print(time.perf_counter() - start, flush=True)


if __name__ == "__main__":
    main()
