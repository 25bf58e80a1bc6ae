"""One-image detection with OpenCV 4.x DNN, the script a user would write instead of `detector test`.

Runs in the OpenCV 4.x environment (opencv_dnn.py): reads the Darknet cfg and weights with
`cv2.dnn.readNetFromDarknet`, the image with `cv2.imread`, makes the 1/255 blob at the net's size, runs
the forward, keeps the boxes above THRESH, applies NMS per class (`cv2.dnn.NMSBoxesBatched`), prints one line a
box, draws them and writes predictions.jpg: what pydarknet's `detector test` does for the same image.

    python opencv_detect.py CFG WEIGHTS NAMES IMAGE OUT_JPG THREADS
"""
import re
import sys

import cv2
import numpy as np

THRESH, NMS = 0.5, 0.45   # pjreddie's `detector test` defaults


def net_size(cfg: str) -> tuple[int, int]:
    text = open(cfg).read()
    return (int(re.search(r"^\s*width\s*=\s*(\d+)", text, re.M).group(1)),
            int(re.search(r"^\s*height\s*=\s*(\d+)", text, re.M).group(1)))


def main() -> None:
    cfg, weights, names_file, image_file, out, threads = sys.argv[1:7]
    cv2.setNumThreads(int(threads))
    names = open(names_file).read().splitlines()
    net = cv2.dnn.readNetFromDarknet(cfg, weights)
    image = cv2.imread(image_file)
    height, width = image.shape[:2]
    blob = cv2.dnn.blobFromImage(image, 1 / 255, net_size(cfg), swapRB=True, crop=False)
    net.setInput(blob)
    rows = np.concatenate([o.reshape(-1, o.shape[-1]) for o in net.forward(net.getUnconnectedOutLayersNames())])
    scores = rows[:, 5:]
    classes = scores.argmax(1)
    best = scores[np.arange(len(rows)), classes]
    keep = best > THRESH
    boxes = rows[keep, :4] * [width, height, width, height]
    corners = np.column_stack([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, 2:]]).tolist()
    chosen = cv2.dnn.NMSBoxesBatched(corners, best[keep].tolist(), classes[keep].tolist(), THRESH, NMS)
    for i in np.asarray(chosen, dtype=int).reshape(-1):
        left, top, w, h = (int(v) for v in corners[i])
        name = names[classes[keep][i]]
        print(f"{name}: {best[keep][i] * 100:.0f}%")
        cv2.rectangle(image, (left, top), (left + w, top + h), (0, 0, 255), 3)
        cv2.putText(image, name, (left, top - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 2)
    cv2.imwrite(out, image)


if __name__ == "__main__":
    main()
