"""Inference latency and throughput: one table of every system, model and batch, with its ratio to
OpenCV DNN measured in the same run, interleaved (A B C A B C ...), medians over --runs calls.

Systems (CPU): pydarknet as loaded (`load_network`), pydarknet fp32 and bf16 (`load_inference_network`:
batch norm folded, convs prepacked for oneDNN), pydarknet int8 (calibrated on the pack's data/*.jpg; run by
OpenVINO when installed, and by onnxruntime), pydarknet's onnxruntime backend, OpenVINO fp32 and
bf16 on pydarknet's ONNX export (when the `openvino` package is installed: `pip install openvino`),
and OpenCV 4.x DNN on the same cfg and weights (its own virtualenv, see opencv_dnn.py). On CUDA:
pydarknet fp32 and bf16 at batch 1 and 64.

Models: yolov2-tiny-voc and yolov2-voc at 416 (the pack's weights), yolov2 at 608 (cfg/yolov2.cfg;
random weights: the pack has no COCO weights, and the time does not depend on the values), the
yolo9000 trunk at 544 (its cfg without [region], which OpenCV cannot run: the WordTree) and the whole
yolo9000 for pydarknet, in ratio to OpenCV's trunk; AlexeyAB's yolov4-tiny at 416 (two [yolo] heads,
[route] groups; the reference-yolo pack's cfg and full-size random weights) and AlexeyAB's yolov4 at 608
(cfg/yolov4.cfg, mish, SPP; random weights made once into the weights cache, 245 MB, see
common.random_weights). A precision this CPU does not run natively is flagged in the last column: PyTorch's bf16
without AVX512-BF16 or AMX (emulated, several times slower than fp32), OpenVINO's bf16 hint without bf16
hardware (it runs f32). OpenMP's threads spin briefly between layers, as in the CLI's one-image
commands (`pydarknet.runtime.spin_between_layers`). Then the GEMM rate of this machine, and the share of
yolo9000's fused forward spent in its WordTree softmax.

Usage: python benchmarks/bench_inference.py [--out results/bench/inference.json] [--runs 7] [--quick]
       [--model yolov4-tiny ...]
"""
from __future__ import annotations

import argparse
import importlib.util
import io
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import one_image_at_a_time  # noqa: F401  (first: OpenMP spins between layers, as in `detector test`)
import common  # before torch: sets OMP_WAIT_POLICY, which OpenMP reads when torch loads it
import torch
from common import (
    REPO,
    Timing,
    cpu_line,
    devices,
    interleave,
    print_table,
    random_weights,
    reference_cfg,
    reference_weights,
    set_threads,
    timed,
    write_json,
)
from opencv_dnn import OpenCVUnavailable, OpenCVWorker

from pydarknet.export import export_network
from pydarknet.fuse import fuse_for_inference
from pydarknet.inference import fast_precision, load_inference_network
from pydarknet.network import Darknet, load_network
from pydarknet.prepack import cpu_runs_bf16

OPENCV = "OpenCV DNN"
CPU_BATCHES = {"yolov2-tiny-voc": (1, 8), "yolov2-voc": (1, 8), "yolov2": (1,), "yolo9000 trunk": (1,),
               "yolo9000": (1,), "yolov4-tiny": (1, 8), "yolov4": (1,)}
CUDA_BATCHES = (1, 64)


@dataclass(frozen=True)
class Model:
    """A cfg and weights as the table names them; `opencv_model` is the row OpenCV times in its place."""

    name: str
    cfg: Path
    weights: Path
    opencv_model: str | None

    def load(self, device: torch.device) -> Darknet:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # the original cfgs repeat batch= and subdivisions= in [net]
            return load_network(self.cfg, self.weights, device)


def trunk_cfg(scratch: Path) -> Path:
    """yolo9000's cfg without its [region] (OpenCV cannot run the WordTree), written into `scratch`."""
    path = scratch / "yolo9000-trunk.cfg"
    text = reference_cfg("yolo9000").read_text()
    path.write_text(text[:text.rindex("[region]")])
    return path


def models(scratch: Path, names: list[str] | None = None) -> list[Model]:
    """The models named (all without `names`), in table order; random weights are made only for those."""
    def pack(name: str, yolo: bool = False) -> Model:
        return Model(name, reference_cfg(name, yolo), reference_weights(name, yolo), name)

    def repo_cfg(name: str) -> Model:   # cfg/ of this repository; no pack has weights for it
        cfg = REPO / "cfg" / f"{name}.cfg"
        return Model(name, cfg, random_weights(cfg), name)

    makers = {"yolov2-tiny-voc": partial(pack, "yolov2-tiny-voc"), "yolov2-voc": partial(pack, "yolov2-voc"),
              "yolov2": partial(repo_cfg, "yolov2"), "yolov4-tiny": partial(pack, "yolov4-tiny", yolo=True),
              "yolov4": partial(repo_cfg, "yolov4"),
              "yolo9000 trunk": lambda: Model("yolo9000 trunk", trunk_cfg(scratch), reference_weights("yolo9000"),
                                              "yolo9000 trunk"),
              "yolo9000": lambda: Model("yolo9000", reference_cfg("yolo9000"), reference_weights("yolo9000"), None)}
    return [make() for name, make in makers.items() if not names or name in names]


def torch_case(model: Callable, batch: int, net: Darknet, device: torch.device,
               dtype: torch.dtype = torch.float32) -> Callable[[], float]:
    """One timed forward of `model` on a fixed random batch of `net`'s input size."""
    x = torch.rand(batch, net.channels, net.height, net.width, device=device, dtype=dtype)

    @torch.inference_mode()
    def case() -> float:
        return timed(lambda: model(x), device)
    return case


def openvino_cases(net: Darknet, batch: int, threads: int) -> dict[str, Callable[[], float]]:
    """OpenVINO fp32 and bf16 on the ONNX export of `net` (nothing when openvino is not installed)."""
    if importlib.util.find_spec("openvino") is None:
        return {}
    import numpy as np
    import openvino

    core = openvino.Core()
    onnx = io.BytesIO()
    export_network(net, onnx)
    ov_model = core.read_model(onnx.getvalue())
    ov_model.reshape([batch, net.channels, net.height, net.width])
    x = np.random.default_rng(0).random((batch, net.channels, net.height, net.width), dtype=np.float32)
    cases = {}
    for precision in ("fp32", "bf16"):
        compiled = core.compile_model(ov_model, "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                                                        "INFERENCE_PRECISION_HINT": precision.replace("fp", "f")})
        request = compiled.create_infer_request()
        cases[f"OpenVINO {precision}"] = partial(timed, partial(request.infer, [x]), torch.device("cpu"))
    return cases


def calibration_images() -> list[Path]:
    """What int8 is calibrated on: the pack's sample images (dog, horses, person, eagle, ...)."""
    return sorted((common.reference_dir() / "darknet" / "data").glob("*.jpg"))


def emulated_precisions() -> dict[str, str]:
    """The CPU systems whose precision this machine lacks the hardware for, with what it does instead; and
    which row `-precision fast` runs here."""
    notes = {f"pydarknet {fast_precision(torch.device('cpu'), calibration=calibration_images())}":
             "= precision fast here"}
    if not cpu_runs_bf16():
        notes["pydarknet bf16"] = "emulated: no AVX512-BF16/AMX"
    if importlib.util.find_spec("openvino") is not None:
        import openvino

        if "BF16" not in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            notes["OpenVINO bf16"] = "runs f32: no bf16 hardware"
    return notes


def cpu_cases(model: Model, net: Darknet, batch: int, opencv: OpenCVWorker | None,
              threads: int) -> dict[str, Callable[[], float]]:
    cpu = torch.device("cpu")
    fp32 = load_inference_network(model.cfg, model.weights, cpu)
    cases = {"pydarknet as loaded": torch_case(net, batch, net, cpu),
             "pydarknet fp32": torch_case(fp32, batch, net, cpu),
             "pydarknet bf16": torch_case(load_inference_network(model.cfg, model.weights, cpu, precision="bf16"),
                                          batch, net, cpu)}
    if importlib.util.find_spec("onnxruntime") is not None:
        # backend torch: OpenVINO where installed, else onnxruntime (inference._int8_backend)
        int8_backends = {"pydarknet int8": "torch", "pydarknet int8 onnxruntime": "onnxruntime"}
        for name, backend in int8_backends.items():
            if backend == "onnxruntime" and importlib.util.find_spec("openvino") is None:
                continue   # the same as the row above
            int8 = load_inference_network(model.cfg, model.weights, cpu, precision="int8", backend=backend,
                                          calibration=calibration_images())
            cases[name] = torch_case(int8, batch, net, cpu)
        cases["pydarknet onnxruntime"] = torch_case(
            load_inference_network(model.cfg, model.weights, cpu, backend="onnxruntime"), batch, net, cpu)
    cases.update(openvino_cases(net, batch, threads))
    if opencv is not None:
        cases[OPENCV] = partial(opencv.forward_seconds, batch, net.height, net.width)
    return cases


def cuda_cases(model: Model, net: Darknet, batch: int) -> dict[str, Callable[[], float]]:
    cuda = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    return {f"pydarknet {precision}": torch_case(load_inference_network(model.cfg, model.weights, cuda,
                                                                        precision=precision), batch, net, cuda)
            for precision in ("fp32", "bf16")}


def start_opencv(model: Model, threads: int) -> OpenCVWorker | None:
    try:
        return OpenCVWorker(model.cfg, model.weights, threads)
    except OpenCVUnavailable as exc:
        print(f"OpenCV DNN baseline skipped for {model.name}: {exc}")
        return None


def timings(model_list: list[Model], threads: int, warmup: int, runs: int, no_opencv: bool) -> list[dict]:
    rows, notes = [], emulated_precisions()
    for device in devices():
        for model in model_list:
            net = model.load(device)
            opencv = None
            if device.type == "cpu" and not no_opencv and model.opencv_model == model.name:
                opencv = start_opencv(model, threads)
            try:
                for batch in CPU_BATCHES[model.name] if device.type == "cpu" else CUDA_BATCHES:
                    cases = (cpu_cases(model, net, batch, opencv, threads) if device.type == "cpu"
                             else cuda_cases(model, net, batch))
                    print(f"timing {model.name} at {net.width}, batch {batch}, {device.type}: {', '.join(cases)}",
                          flush=True)
                    for name, seconds in interleave(cases, warmup, runs).items():
                        rows.append({"device": device.type, "model": model.name, "size": net.width, "batch": batch,
                                     "opencv_model": model.opencv_model, **Timing(name, batch, seconds).as_dict(),
                                     "note": notes.get(name, "") if device.type == "cpu" else ""})
            finally:
                if opencv is not None:
                    opencv.close()
    return rows


EMULATED_GEMM_SIZE = 512   # bfloat16 without bf16 hardware: ~1 GFLOP/s, 2048^2 would take half a minute a product


def gemm_rate(threads: int, size: int = 2048, runs: int = 5) -> dict[str, float]:
    """GFLOP/s of a square matrix product (float32, and bfloat16; at EMULATED_GEMM_SIZE where bf16 is emulated),
    best of `runs`: the machine's ceiling."""
    rates = {}
    for dtype in (torch.float32, torch.bfloat16):
        n = size if dtype == torch.float32 or cpu_runs_bf16() else EMULATED_GEMM_SIZE
        a, b = torch.rand(n, n, dtype=dtype), torch.rand(n, n, dtype=dtype)
        seconds = min(timed(partial(torch.mm, a, b), torch.device("cpu")) for _ in range(runs + 1))
        rates[str(dtype).removeprefix("torch.")] = 2 * n ** 3 / seconds / 1e9
    return rates


def tree_softmax_share(model: Model, warmup: int, runs: int) -> dict:
    """yolo9000 at 544, batch 1: the share of its fused forward spent in the region layer and its tree softmax."""
    cpu = torch.device("cpu")
    fused = fuse_for_inference(model.load(cpu))
    region = fused.region
    captured: list[torch.Tensor] = []
    # registered after fuse_for_inference's own pre-hook, so it sees the input the layer really gets
    handle = region.register_forward_pre_hook(lambda _module, inputs: captured.append(inputs[0]))
    forward = torch_case(fused, 1, fused, cpu)
    forward()
    handle.remove()
    raw = captured[0]                                                    # (1, A*(5+C), H, W)
    o = region.options
    classes = raw.view(1, o.num, o.coords + 1 + o.classes, *raw.shape[2:])[:, :, o.coords + 1:]
    cases = {"fused forward": forward,
             "region layer": torch.inference_mode()(partial(timed, partial(region, raw), cpu)),
             "tree softmax": torch.inference_mode()(partial(timed, partial(region.tree.softmax, classes, dim=2), cpu))}
    t = {name: Timing(name, 1, seconds).median for name, seconds in interleave(cases, warmup, runs).items()}
    return {name: t[name] / t["fused forward"] for name in ("region layer", "tree softmax")}


def report(rows: list[dict], gemm: dict[str, float], tree: dict | None, threads: int) -> dict:
    """Print the one table (and the GEMM rate, the tree softmax share); return the headline figures."""
    summary, table = {}, []
    for row in rows:
        opencv = next((r for r in rows if r["name"] == OPENCV and r["device"] == row["device"]
                       and r["model"] == row["opencv_model"] and r["batch"] == row["batch"]), None)
        ratio = row["median_s"] / opencv["median_s"] if opencv else None
        model = row["model"] if row["opencv_model"] == row["model"] else f"{row['model']} (vs {row['opencv_model']})"
        table.append([row["device"], f"{model} {row['size']}", row["batch"], row["name"], f"{1e3 * row['median_s']:.1f}",
                      f"{1e3 * row['min_s']:.1f}", f"{row['items_per_s']:.1f}", f"{ratio:.2f}x" if ratio else "-",
                      row.get("note", "")])
        key = f"{row['device']} {row['model']} batch {row['batch']} {row['name']}"
        summary[f"{key} median ms"] = 1e3 * row["median_s"]
        if ratio:
            summary[f"{key} / OpenCV"] = ratio
    print(f"\nInference, {threads} threads; ratio = median time / OpenCV DNN's median in the same interleaved run "
          f"(below 1: faster than OpenCV); note: a precision this CPU only emulates\n{cpu_line()}")
    print_table(table, ["device", "model", "batch", "system", "median ms", "min ms", "images/s", "vs OpenCV", "note"])
    emulated = "" if cpu_runs_bf16() else f" (emulated, {EMULATED_GEMM_SIZE}^2)"
    print(f"GEMM (2048^2, torch, best of 5): float32 {gemm['float32']:.0f} GFLOP/s, "
          f"bfloat16 {gemm['bfloat16']:.1f} GFLOP/s{emulated}")
    summary.update({f"GEMM {name} GFLOP/s": rate for name, rate in gemm.items()})
    if tree:
        print(f"yolo9000 544 fused fp32: region layer {100 * tree['region layer']:.1f}%, WordTree softmax "
              f"{100 * tree['tree softmax']:.1f}% of the forward")
        summary["yolo9000 tree softmax share"] = tree["tree softmax"]
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--runs", type=int, default=7, help="timed calls per case (the median is reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per case first")
    parser.add_argument("--threads", type=int, default=common.THREADS, help="CPU threads, every library")
    parser.add_argument("--no-opencv", action="store_true", help="skip the OpenCV DNN baseline")
    parser.add_argument("--quick", action="store_true", help="yolov2-tiny-voc only (a check that it all runs)")
    parser.add_argument("--model", action="append", choices=list(CPU_BATCHES),
                        help="time only this model (repeatable; the yolo9000 tree share needs yolo9000)")
    args = parser.parse_args()
    set_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        model_list = models(Path(scratch), ["yolov2-tiny-voc"] if args.quick else args.model)
        rows = timings(model_list, args.threads, args.warmup, args.runs, args.no_opencv)
        yolo9000 = next((m for m in model_list if m.name == "yolo9000"), None)
        tree = tree_softmax_share(yolo9000, args.warmup, args.runs) if yolo9000 else None
    gemm = gemm_rate(args.threads)
    summary = report(rows, gemm, tree, args.threads)
    write_json(args.out, {"inference": rows, "gemm_gflops": gemm, "tree_share": tree, "summary": summary,
                          "runs": args.runs, "warmup": args.warmup, "threads": args.threads})


if __name__ == "__main__":
    main()
