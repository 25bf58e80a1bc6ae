"""The parts of `benchmarks/gpu_check.sh` that are Python: each writes `<out>/<part>.json` (and text files).

    python benchmarks/gpu_check.py PART --out OUTDIR [--smoke] [--budget SECONDS]

Parts: ``tree`` (WordTree softmax on CUDA vs CPU), ``amp`` (the demo net, float32 / bf16 / fp16
autocast through `train_detector`), ``ddp`` (two DistributedDataParallel ranks: NCCL, else gloo on
CUDA tensors), ``infer`` (yolov2-voc 416 images/s, batch 1 and 64, fp32 / fp16 / bf16, plain, CUDA
graph, torch.compile), ``train-speed`` (`detector train` images/s with bf16 autocast, data loading
included: how long each iteration waits for the loader), ``profile`` (torch.profiler top kernels of an
inference and of a training step), ``summary`` (summary.md from everything in OUTDIR).

Without CUDA every part says so in its JSON and, with --smoke, runs its CPU path on tiny sizes, so
that the script is tested end to end on a machine without a GPU.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(1, str(REPO / "benchmarks"))
from pydarknet.data.synth import make_synth  # noqa: E402
from pydarknet.engine import detector as detector_module  # noqa: E402
from pydarknet.engine import train as train_module  # noqa: E402
from pydarknet.engine.sgd import DarknetSGD  # noqa: E402
from pydarknet.engine.step import train_step  # noqa: E402
from pydarknet.engine.train import train_detector  # noqa: E402
from pydarknet.errors import TrainingError  # noqa: E402
from pydarknet.fuse import fuse_for_inference  # noqa: E402
from pydarknet.network import Darknet  # noqa: E402
from pydarknet.tree import WordTree  # noqa: E402

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")
NO_CUDA = "skipped: no CUDA device here"
# synthetic images and backups: not in OUTDIR, which comes back from the GPU machine
SCRATCH = Path(os.environ.get("GPU_CHECK_SCRATCH", Path(tempfile.gettempdir()) / "pydarknet-gpu-check"))
DEMO_CFG = REPO / "cfg" / "synth-tiny.cfg"
DETECTOR_CFG = REPO / "cfg" / "yolov2-voc.cfg"
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
SAME_LOSS_RANGE = 0.25      # AMP's final loss within 25% of float32's counts as "the same range"
PARTS = {}


def part(name: str):
    def register(function):
        PARTS[name] = function
        return function
    return register


def write(out: Path, name: str, result: dict, echo: bool = True) -> None:
    out.mkdir(parents=True, exist_ok=True)
    result = {"part": name, "cuda": torch.cuda.get_device_name() if CUDA else None, "torch": torch.__version__,
              **result}
    (out / f"{name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    if echo:
        print(json.dumps({k: v for k, v in result.items() if k in ("part", "status", "headline")}, default=str))


def quiet_train(data: Path, cfg: Path, **options) -> train_module.TrainResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train_detector(data, cfg, show_progress=False, verbose=False, log=lambda line: None, **options)


def cfg_with(source: Path, target: Path, **net_options) -> Path:
    """`source` with its [net] batch/subdivisions (and the other options given) replaced; region random=0."""
    lines = []
    for line in source.read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        if key in net_options or key in ("batch", "subdivisions"):
            continue
        lines.append("random=0" if key == "random" else line)
        if line.strip() == "[net]":
            lines += [f"{k}={v}" for k, v in net_options.items()]
    target.write_text("\n".join(lines) + "\n")
    return target


# ------------------------------------------------------------------------------------------- tree
@part("tree")
def tree_part(out: Path, smoke: bool, budget: float) -> dict:
    """The WordTree group softmax of the yolo9000 region layer (17x17 cells, 3 anchors, 9418 classes)."""
    if not CUDA:
        return {"status": NO_CUDA}
    tree = WordTree.read(REPO / "data" / "9k.tree")
    x = 4 * torch.randn(2, 3, tree.n, 17, 17, generator=torch.Generator().manual_seed(0))
    cpu = tree.softmax(x, dim=2)
    cuda = tree.softmax(x.cuda(), dim=2).cpu()
    hier_cpu, hier_cuda = tree.hierarchy_predictions(cpu, dim=2), tree.hierarchy_predictions(cuda.cuda(), dim=2).cpu()
    error = float((cuda - cpu).abs().max())
    hier_error = float((hier_cuda - hier_cpu).abs().max())
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(20):
        tree.softmax(x.cuda(non_blocking=True), dim=2)
    torch.cuda.synchronize()
    ok = error <= 1e-6 and hier_error <= 1e-6
    return {"status": "ok" if ok else "FAILED", "max_abs_softmax": error, "max_abs_hierarchy": hier_error,
            "cuda_ms_per_call_incl_copy": 1e3 * (time.perf_counter() - start) / 20,
            "headline": f"tree softmax CUDA vs CPU: max |diff| {error:.1e} (hierarchy {hier_error:.1e}); "
                        f"{'equal to rounding' if ok else 'DIFFERENT'}"}


# -------------------------------------------------------------------------------------------- amp
def demo_data(smoke: bool) -> Path:
    """The demo's synthetic set (pydarknet/demo.py: 256 px), small: 24 images, or 600 on the GPU."""
    folder = SCRATCH / ("synth-smoke" if smoke else "synth")
    data = folder / "synth.data"
    return data if data.exists() else make_synth(folder, train=24 if smoke else 600, valid=2, size=256, seed=0)


@part("amp")
def amp_part(out: Path, smoke: bool, budget: float) -> dict:
    """200 iterations of the demo net from scratch in float32, bf16 and fp16 autocast: same loss range?"""
    iterations = 4 if smoke else 200
    data = demo_data(smoke)
    runs = {}
    for name, amp in (("fp32", False), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        if amp and not CUDA:
            runs[name] = {"status": NO_CUDA}
            continue
        (data.parent / "backup").mkdir(exist_ok=True)
        start = time.perf_counter()
        try:
            result = quiet_train(data, DEMO_CFG, amp=amp, workers=2 if smoke else 8, max_batches=iterations, seed=0)
        except TrainingError as error:   # fp16 without loss scaling may overflow
            runs[name] = {"status": "FAILED", "error": str(error), "seconds": time.perf_counter() - start}
            continue
        losses = [entry.loss for entry in result.history]
        tail = losses[-max(1, len(losses) // 10):]
        runs[name] = {"status": "ok", "seconds": time.perf_counter() - start, "first_loss": losses[0],
                      "final_avg_loss": result.history[-1].avg_loss, "last_tenth_mean_loss": statistics.mean(tail),
                      "min_loss": min(losses), "max_loss": max(losses)}
    reference = runs["fp32"].get("last_tenth_mean_loss")
    verdicts = []
    for name in ("bf16", "fp16"):
        run = runs[name]
        if run.get("status") == "ok" and reference:
            run["relative_to_fp32"] = run["last_tenth_mean_loss"] / reference - 1
            run["same_range_as_fp32"] = abs(run["relative_to_fp32"]) <= SAME_LOSS_RANGE
            verdicts.append(f"{name} {run['last_tenth_mean_loss']:.3f} ({100 * run['relative_to_fp32']:+.0f}%)")
        else:
            verdicts.append(f"{name} {run.get('status')}")
    ok = all(runs[n].get("same_range_as_fp32", not CUDA) for n in ("bf16", "fp16"))
    return {"status": "ok" if ok else "FAILED", "iterations": iterations, "runs": runs,
            "headline": f"demo net, {iterations} iterations, mean loss of the last tenth: fp32 "
                        f"{reference if reference is None else round(reference, 3)}; " + "; ".join(verdicts)}


# -------------------------------------------------------------------------------------------- ddp
@part("ddp")
def ddp_part(out: Path, smoke: bool, budget: float) -> dict:
    """Two ranks through `train_detector`'s DDP path: NCCL first; on one GPU NCCL refuses two ranks on
    the same device, so then gloo with CUDA tensors (the same engine code, another transport)."""
    folder = out / "ddp"
    data = demo_data(smoke)
    attempts = []
    deadline = time.perf_counter() + budget - 5
    for backend in (("nccl", "gloo") if CUDA else ("gloo",)):
        left = deadline - time.perf_counter()   # NCCL fails within seconds when it refuses: gloo gets the rest
        attempt = _ddp_run(folder / backend, data, backend, smoke, timeout=min(left, 40) if backend == "nccl" else left)
        attempts.append(attempt)
        if attempt["status"] == "ok":
            break
    last = attempts[-1]
    note = "" if CUDA else " (CPU: gloo only)"
    if CUDA and attempts[0]["status"] != "ok":
        note = f" (NCCL failed: {attempts[0].get('error_line', '?')}; fell back to gloo on CUDA)"
    return {"status": last["status"], "gpus": torch.cuda.device_count(), "attempts": attempts,
            "headline": f"DDP 2 ranks, {last['backend']}: {last['status']}, ranks' weights identical: "
                        f"{last.get('identical_parameters')}{note}"}


def _ddp_run(folder: Path, data: Path, backend: str, smoke: bool, timeout: float) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(Path(__file__).resolve()), "ddp-worker", "--out", str(folder), "--backend", backend,
               *(["--smoke"] if smoke else [])]
    for old in folder.glob("rank*.json"):
        old.unlink()
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=dict(os.environ, OMP_NUM_THREADS="1", GPU_CHECK_DATA=str(data)))
    try:
        text, code = process.communicate(timeout=timeout)[0], process.returncode
    except subprocess.TimeoutExpired:   # a hung collective: torchrun passes SIGTERM on to its ranks
        process.terminate()
        try:
            text = process.communicate(timeout=15)[0]
        except subprocess.TimeoutExpired:
            process.kill()
            text = process.communicate()[0]
        code = "timeout"
    (folder / "torchrun.log").write_text(text)
    ranks = [json.loads(p.read_text()) for p in sorted(folder.glob("rank*.json"))]
    result = {"backend": backend, "exit": code, "seconds": time.perf_counter() - start, "ranks": ranks}
    if code == 0 and len(ranks) == 2:
        result["identical_parameters"] = ranks[0]["parameter_digest"] == ranks[1]["parameter_digest"]
        result["status"] = "ok" if result["identical_parameters"] else "FAILED"
    else:
        errors = [line for line in text.splitlines() if "Error" in line or "error" in line]
        result.update(status="FAILED", error_line=(errors[-1] if errors else text[-300:]).strip()[:300])
    return result


@part("ddp-worker")
def ddp_worker(out: Path, smoke: bool, budget: float, backend: str = "gloo") -> dict | None:
    """One rank (under torchrun): the process group made here, then the engine's own DDP training."""
    import hashlib

    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if CUDA and torch.cuda.device_count() < world:
        os.environ["LOCAL_RANK"] = "0"   # one GPU: every rank on cuda:0 (engine: device = LOCAL_RANK)
    if CUDA:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(backend)   # train_detector keeps a group it finds initialised
    nets = []
    optimizer = train_module.DarknetSGD
    train_module.DarknetSGD = lambda net: (nets.append(net), optimizer(net))[1]
    start = time.perf_counter()
    result = quiet_train(Path(os.environ["GPU_CHECK_DATA"]), DEMO_CFG, amp=CUDA, workers=1 if smoke else 4,
                         max_batches=3 if smoke else 20)
    digest = hashlib.sha256()
    for parameter in nets[0].parameters():
        digest.update(parameter.detach().float().cpu().numpy().tobytes())
    (out / f"rank{rank}.json").write_text(json.dumps({
        "rank": rank, "world": world, "backend": backend, "device": str(next(nets[0].parameters()).device),
        "iterations": len(result.history), "seconds": time.perf_counter() - start, "seen": nets[0].seen,
        "parameter_digest": digest.hexdigest()}))
    dist.destroy_process_group()
    return None


# ------------------------------------------------------------------------------------------ infer
def _forward_loop(model, x: torch.Tensor, calls: int) -> float:
    """Seconds per call of `calls` back-to-back calls."""
    synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        model(x)
    synchronize()
    return (time.perf_counter() - start) / calls


def synchronize() -> None:
    if CUDA:
        torch.cuda.synchronize()


def _graphed(model, x: torch.Tensor):
    """A CUDA graph of one forward: replaying it skips the per-kernel launch cost (batch 1)."""
    static = x.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            model(static)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        model(static)
    return lambda _x: graph.replay()


@part("infer")
def infer_part(out: Path, smoke: bool, budget: float) -> dict:
    """yolov2-voc 416, random weights, fused BN + channels_last, cudnn.benchmark; images/s."""
    deadline = time.perf_counter() + budget - 10
    torch.backends.cudnn.benchmark = True
    net = Darknet.from_cfg(DEMO_CFG if smoke else DETECTOR_CFG, seed=0).eval()
    fused = fuse_for_inference(net).to(DEVICE)
    batches = (1,) if smoke else (1, 64)
    dtypes = ("fp32",) if not CUDA else ("fp32", "fp16", "bf16")
    variants = ("plain",) if not CUDA else ("plain", "cuda graph", "compile")
    rows = []
    for dtype_name in dtypes:
        model = fused.to(DTYPES[dtype_name])
        compiled = None
        for batch in batches:
            x = torch.rand(batch, 3, net.height, net.width, device=DEVICE).to(DTYPES[dtype_name],
                                                                              memory_format=torch.channels_last)
            for variant in variants:
                row = {"dtype": dtype_name, "batch": batch, "variant": variant}
                rows.append(row)
                if variant == "compile" and (deadline - time.perf_counter() < 90 or dtype_name == "fp32"):
                    row["status"] = "skipped: no time left" if dtype_name != "fp32" else "skipped (fp16/bf16 only)"
                    continue
                try:
                    with torch.inference_mode():
                        if variant == "compile":
                            compiled = compiled or torch.compile(model)
                            start = time.perf_counter()
                            compiled(x)
                            row["compile_seconds"] = time.perf_counter() - start
                            call = compiled
                        else:
                            call = _graphed(model, x) if variant == "cuda graph" else model
                        call(x)
                        calls = 2 if smoke else (50 if batch == 1 else 10)
                        seconds = statistics.median(_forward_loop(call, x, calls) for _ in range(1 if smoke else 3))
                    row.update(status="ok", ms_per_batch=1e3 * seconds, images_per_s=batch / seconds)
                except Exception as error:  # noqa: BLE001  (record and go on: one mode failing is a finding)
                    row.update(status="FAILED", error=f"{type(error).__name__}: {str(error)[:300]}")
                # kept up to date: a part killed by its timeout still leaves the rows it measured
                write(out, "infer", {"status": "partial (killed by its timeout?)", "rows": rows}, echo=False)
                (out / "infer.txt").write_text(_table(rows, ["dtype", "batch", "variant", "status", "ms_per_batch",
                                                             "images_per_s", "compile_seconds"]))
    best = max((r for r in rows if r.get("status") == "ok"), key=lambda r: r["images_per_s"], default=None)
    failed = [f"{r['dtype']} b{r['batch']} {r['variant']}" for r in rows if r.get("status") == "FAILED"]
    return {"status": "FAILED" if failed else "ok", "rows": rows, "tf32": {
                "matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32},
            "headline": (f"best {best['images_per_s']:.0f} img/s ({best['dtype']}, batch {best['batch']}, "
                         f"{best['variant']})" if best else "no row ran") + (f"; failed: {failed}" if failed else "")}


def _table(rows: list[dict], columns: list[str]) -> str:
    def cell(value) -> str:
        return f"{value:.2f}" if isinstance(value, float) else "" if value is None else str(value)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ train-speed
class TimedLoader:
    """Wraps train_detector's loader: the seconds each `next()` waited for a mini-batch."""

    def __init__(self, loader):
        self.loader = loader
        self.waits: list[float] = []

    def __iter__(self):
        iterator = iter(self.loader)
        while True:
            start = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                return
            self.waits.append(time.perf_counter() - start)
            yield batch

    def __getattr__(self, name):
        return getattr(self.loader, name)


@part("train-speed")
def train_speed_part(out: Path, smoke: bool, budget: float) -> dict:
    """`detector train` on VOC-sized synthetic JPEGs, bf16 autocast, 12 loader workers: images/s and
    how much of each iteration is spent waiting for the data loader."""
    folder = SCRATCH / "train-speed"
    folder.mkdir(parents=True, exist_ok=True)
    torch.backends.cudnn.benchmark = True
    if smoke:
        data = make_synth(folder / "synth", train=16, valid=1, size=128, seed=0)
        cfg, iterations, workers, skip = cfg_with(DEMO_CFG, folder / "net.cfg", batch=8, subdivisions=1), 3, 2, 1
    else:
        data = make_synth(folder / "synth", train=384, valid=1, size=500, seed=0)
        cfg = cfg_with(DETECTOR_CFG, folder / "net.cfg", batch=64, subdivisions=1, burn_in=0)
        iterations, workers, skip = 30, 12, 5
    loaders: list[TimedLoader] = []
    original = detector_module.train_loader   # what DetectorTask.open_data calls
    detector_module.train_loader = lambda *a, **k: loaders.append(TimedLoader(original(*a, **k))) or loaders[-1]
    try:
        result = quiet_train(data, cfg, amp=CUDA, workers=workers, max_batches=iterations)
    finally:
        detector_module.train_loader = original
    waits = loaders[0].waits
    history = result.history[skip:]
    per_iteration = len(waits) // len(result.history)       # mini-batches per iteration (subdivisions)
    wait = sum(waits[skip * per_iteration:])                # the first iterations start workers and cuDNN
    seconds = sum(entry.seconds for entry in history)
    images = history[-1].images - result.history[skip - 1].images
    share = wait / seconds
    return {"status": "ok", "cfg": str(cfg), "amp": "bf16" if CUDA else "none (CPU)", "iterations": iterations,
            "timed_iterations": len(history), "images_per_s": images / seconds, "loader_wait_s": wait,
            "step_s": seconds - wait, "loader_wait_share": share, "workers": workers,
            "headline": f"detector train {images / seconds:.0f} img/s ({'bf16' if CUDA else 'fp32'}, data loading included, "
                        f"{workers} workers); waiting for data {100 * share:.0f}% of the time: "
                        f"{'the GPU waits on the loader' if share > 0.1 else 'the loader keeps up'}"}


# ---------------------------------------------------------------------------------------- profile
@part("profile")
def profile_part(out: Path, smoke: bool, budget: float) -> dict:
    """torch.profiler, top kernels by device time: a bf16 inference of batch 64 and a bf16 training step."""
    from bench_train import random_truths
    from torch.profiler import ProfilerActivity, profile

    torch.backends.cudnn.benchmark = True
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if CUDA else [])
    sort = "self_cuda_time_total" if CUDA else "self_cpu_time_total"
    batch, cfg = (2, DEMO_CFG) if smoke else (64, DETECTOR_CFG)
    net = Darknet.from_cfg(cfg, seed=0)
    dtype = torch.bfloat16 if CUDA else torch.float32
    fused = fuse_for_inference(net.eval()).to(DEVICE, dtype)
    x = torch.rand(batch, 3, net.height, net.width, device=DEVICE).to(dtype, memory_format=torch.channels_last)
    with torch.inference_mode():
        fused(x)
        with profile(activities=activities) as inference:
            for _ in range(1 if smoke else 5):
                fused(x)
            synchronize()
    (out / "profile_inference.txt").write_text(_top(inference, sort))

    net = Darknet.from_cfg(cfg, seed=0)
    net.options = dataclasses.replace(net.options, batch=2 if smoke else 16, subdivisions=1)
    net.to(DEVICE, memory_format=torch.channels_last)
    optimizer = DarknetSGD(net)
    mini = net.options.mini_batch
    images = torch.rand(mini, 3, net.height, net.width, device=DEVICE).contiguous(memory_format=torch.channels_last)
    truths = random_truths(mini, net.region.options.classes, torch.Generator().manual_seed(0)).to(DEVICE)
    train_step(net, images, truths, optimizer, record=False, amp=CUDA)
    with profile(activities=activities) as training:
        for _ in range(1 if smoke else 3):
            train_step(net, images, truths, optimizer, record=False, amp=CUDA)
        synchronize()
    (out / "profile_train.txt").write_text(_top(training, sort))
    return {"status": "ok", "inference": f"{cfg.name} batch {batch} fused, {dtype}",
            "training": f"{cfg.name} train_step batch {mini}, amp={CUDA}",
            "headline": "tables: profile_inference.txt, profile_train.txt (sorted by " + sort + ")"}


def _top(profiler, sort: str) -> str:
    try:
        return profiler.key_averages().table(sort_by=sort, row_limit=20)
    except (KeyError, AttributeError, ValueError):   # newer torch names it self_device_time_total
        return profiler.key_averages().table(sort_by=sort.replace("cuda", "device"), row_limit=20)


# ---------------------------------------------------------------------------------------- summary
@part("summary")
def summary_part(out: Path, smoke: bool, budget: float) -> None:
    rows = []
    for line in (out / "parts.tsv").read_text().splitlines() if (out / "parts.tsv").exists() else []:
        name, code, seconds = line.split("\t")
        rows.append([name, _exit(code), seconds, _headline(out, name)])
    text = ["# GPU check summary", "", f"torch {torch.__version__}, device: "
            f"{torch.cuda.get_device_name() if CUDA else 'none (CPU only)'}{' (CPU smoke run)' if smoke else ''}", "",
            "| part | result | seconds | headline |", "|---|---|---|---|"]
    text += [f"| {' | '.join(row)} |" for row in rows]
    for path in sorted(out.glob("parity*.md")) + [out / "infer.txt"]:
        if path.exists():
            text += ["", f"## {path.name}", "", path.read_text()]
    (out / "summary.md").write_text("\n".join(text) + "\n")
    print("\n".join(text))
    return None


def _exit(code: str) -> str:
    return {"0": "ok", "124": "TIMEOUT", "137": "KILLED (timeout)", "skipped": "skipped (out of time)"}.get(
        code, f"FAILED (exit {code})")


def _headline(out: Path, name: str) -> str:
    """What a part's own files say in one line."""
    if name == "pytest-gpu" and (out / "pytest_gpu.xml").exists():
        suite = ElementTree.parse(out / "pytest_gpu.xml").getroot()
        suite = suite if suite.tag == "testsuite" else suite[0]
        counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
        return (f"{counts['tests']} tests: {counts['tests'] - counts['failures'] - counts['errors'] - counts['skipped']}"
                f" passed, {counts['failures']} failed, {counts['errors']} errors, {counts['skipped']} skipped")
    if name.startswith("parity") and (out / f"{name}.json").exists():
        result = json.loads((out / f"{name}.json").read_text())
        rows = result["forward"] + result["training"]
        bad = [r.get("net", r.get("case")) for r in rows if not r["within_tolerance"]]
        return (f"{len(rows)} nets/steps on {result['device']}: "
                + ("all within §9" if not bad else f"OUTSIDE §9: {bad}") + f" (tables: {name}.md)")
    if (out / f"{name}.json").exists():
        result = json.loads((out / f"{name}.json").read_text())
        return str(result.get("headline", result.get("status")))
    log = out / f"{name}.log"
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()] if log.exists() else []
    return lines[-1][:200] if lines else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=sorted(PARTS))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (the CPU try of the script)")
    parser.add_argument("--budget", type=float, default=float(os.environ.get("GPU_CHECK_PART_SECONDS", 120)),
                        help="seconds this part may take (default: $GPU_CHECK_PART_SECONDS, set by gpu_check.sh)")
    parser.add_argument("--backend", default="gloo", help="ddp-worker: process group backend")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    extra = {"backend": args.backend} if args.part == "ddp-worker" else {}
    try:
        result = PARTS[args.part](args.out, args.smoke, args.budget, **extra)
    except Exception:  # noqa: BLE001  (the part's JSON says what failed; the script goes on to the next)
        result = {"status": "FAILED", "error": traceback.format_exc()[-3000:]}
        print(result["error"], file=sys.stderr)
    if result is not None:
        if args.smoke and not CUDA and NO_CUDA not in str(result.get("headline", result["status"])):
            headline = result.get("headline", result["status"])
            result["headline"] = f"{headline} [CPU smoke run: the CUDA cases are skipped]"
        write(args.out, args.part, result)
        if result["status"] not in ("ok",) and not result["status"].startswith("skipped"):
            raise SystemExit(1)


if __name__ == "__main__":
    main()
