"""`detector valid` throughput (images/s) on synthetic images, decoding overlapped with inference.

Runs `pydarknet.evaluate.validate_detector` as the command does (letterbox, thresh .005, NMS .45,
VOC result files written) with a randomly initialised net — nothing is trained, only the speed is
measured — over a synthetic valid list (`pydarknet/data/synth.py`, sides in [size/2, size]), and
prints one line. The time covers decoding, letterboxing, the forwards, decoding the boxes, NMS and
writing the files; the images are made and the net built before the clock starts.

Usage: python benchmarks/bench_valid.py [--images 200] [--cfg cfg/yolov2-tiny-voc.cfg] [--out valid.json]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import common  # before torch: sets OMP_WAIT_POLICY, which OpenMP reads when torch loads it
import torch
from common import set_threads, write_json

from pydarknet.data.synth import make_synth
from pydarknet.network import load_network
from pydarknet.evaluate import DEFAULT_BATCH, DEFAULT_WORKERS, ValidSetup, validate_detector

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", type=int, default=416, help="largest synthetic image side")
    parser.add_argument("--cfg", default=str(REPO / "cfg" / "yolov2-tiny-voc.cfg"))
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="decoding threads (0: no overlap)")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH)
    parser.add_argument("--threads", type=int, default=common.THREADS)
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", default=None, help="also write the figures as JSON here")
    args = parser.parse_args()
    set_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        data = make_synth(Path(tmp) / "synth", train=1, valid=args.images, size=args.size)
        net = load_network(args.cfg, None, args.device)
        # the net's classes decide the result files (one name each); results stay in the temporary folder
        (data.parent / "synth.names").write_text("".join(f"class{k}\n" for k in range(net.region.options.classes)))
        data.write_text(f"{data.read_text()}results={data.parent / 'results'}\n")
        setup = ValidSetup.from_data(data)
        start = time.perf_counter()
        validate_detector(net, setup, workers=args.workers, batch=args.batch)
        seconds = time.perf_counter() - start
    rate = args.images / seconds
    print(f"detector valid: {rate:.2f} images/s ({args.images} images in {seconds:.1f} s; {Path(args.cfg).name} "
          f"at {net.width}x{net.height}, {net.device}, {torch.get_num_threads()} threads, workers={args.workers}, "
          f"batch={args.batch}; load average {common.START_LOAD[0]:.1f})")
    write_json(args.out, {"summary": {"valid_images_per_s": rate}, "images": args.images, "seconds": seconds,
                          "cfg": args.cfg, "workers": args.workers, "batch": args.batch})


if __name__ == "__main__":
    main()
