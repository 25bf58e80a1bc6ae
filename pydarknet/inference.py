"""Inference-only networks: a Darknet net with batch norm folded, run by PyTorch (float32 or bfloat16),
onnxruntime or OpenVINO, behind the interface that `predict.detect`, `classify` and validation read.

>>> net = load_inference_network("yolov2-voc.cfg", "yolov2-voc.weights")             # doctest: +SKIP
>>> detect(net, "dog.jpg")                                                          # doctest: +SKIP
>>> region = net(images)            # (B, 5, 25, 13, 13) float32, as the plain net   # doctest: +SKIP
>>> yolo = load_inference_network("yolov4-tiny.cfg", "yolov4-tiny.weights", precision="bf16")  # doctest: +SKIP
>>> [out.shape for out in yolo(images)]   # one float32 output per [yolo] layer           # doctest: +SKIP
>>> int8 = load_inference_network("yolov2-voc.cfg", "yolov2-voc.weights", precision="int8",
...                               calibration="train.txt")                              # doctest: +SKIP
"""
from __future__ import annotations

import importlib.util
import io
import os
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from .choices import BACKENDS, PRECISIONS
from .errors import DarknetError
from .export import INPUT_NAME, export_network
from .fuse import fuse_for_inference, give_heads_nchw_inputs
from .layers.conv import ConnectedLayer, ConvolutionalLayer
from .network import Darknet, load_network
from .prepack import PrepackedConvolution, cpu_runs_bf16, prepack_convolutions, prepacking_available
from .quantize import Calibration, quantize_network


class SlowPrecisionWarning(UserWarning):
    """A precision this device only emulates was asked for."""


class InferenceNetwork(nn.Module):
    """A fused (batch norm folded) Darknet net; `forward` returns float32 like `Darknet.forward` (a list of
    tensors, one per [yolo] layer in network order, for a net with several).

    precision "fp32": the fused net, on the CPU with its convs prepacked for oneDNN (`prepack`), within
    the reference pack's tolerances of Darknet (and of the fused net to rounding).
    precision "bf16": the layers before the last one hold bfloat16 weights (prepacked on the CPU) and run on
    bfloat16 features, accumulating in float32; the last layer (region / softmax) runs in float32 on the
    up-cast features, so that its group sums keep float32 accuracy (a net ending in a conv, a trunk,
    runs wholly in bf16). In a net with [yolo] layers every layer but the [yolo] ones runs in bf16, and each
    [yolo] layer runs in float32 on its up-cast input (its logistic, scale_x_y and, in the decode, exp).
    backend "onnxruntime": the exported ONNX graph (`export.export_network`) in one session built here,
    with as many intra-op threads as torch uses; inputs are moved to the CPU for it (fp32 only).
    backend "openvino" (`pip install openvino`): the same graph compiled by OpenVINO for the CPU, with
    its inference precision set to f32 or bf16 (bf16 there covers the whole graph, last layer included).
    precision "int8" (CPU; needs `calibration`, the user's images: a list file or a list of paths): the
    graph quantized after training (`quantize.quantize_network`: int8 weights per channel, uint8 activations
    with ranges from the calibration images, the first conv and the head in float32), run by OpenVINO
    (backend "openvino", and "torch" when openvino is installed) or by onnxruntime (backend "onnxruntime",
    and "torch" without openvino). On 2 AVX2 cores OpenVINO is the faster (batch 1, ratios to OpenCV DNN's
    time in `quantize`'s docstring).
    precision "fast": the fastest this device runs (`fast_precision`): bf16 on a GPU and on a CPU with
    AVX512-BF16 or AMX, else int8 when `calibration` is given, else fp32.

    A prepacked net holds opaque oneDNN tensors: it cannot be copied or moved to another device.
    """

    def __init__(self, net: Darknet, precision: str = "fp32", backend: str = "torch", in_place: bool = False,
                 calibration: Calibration | None = None, single_forward: bool = False, winograd: bool | None = None):
        """`in_place`: fold `net` itself instead of a copy (for a net nothing else uses: saves a copy).
        `calibration`: the images int8 is calibrated on (a list file or paths; precision int8 and fast).
        `single_forward`: the net will run once (a one-image `detector test`), so the weights are used as
        folded: prepacking (Winograd's transforms included) and NHWC reorder them once to save on every later
        forward, but for one forward that costs more than it saves (yolov2-voc, 2 AVX2 cores, quiet: 0.43-0.63 s
        at load to save 0.15-0.2 s of the forward).
        `winograd`: prepacked fp32 runs the 3x3 convs where Winograd measured faster as Winograd F(m, 3)
        (`winograd.winograd_tile`); False: every conv prepacked for oneDNN; None: True on the CPUs the rule was
        measured on (`winograd.measured_faster_here`: AVX2 without AVX-512)."""
        super().__init__()
        _check_choice("precision", precision, PRECISIONS)
        _check_choice("backend", backend, BACKENDS)
        if precision == "fast":
            precision = fast_precision(net.device, backend, calibration)
        if precision == "int8":
            backend = _int8_backend(net, backend, calibration)
        if backend == "onnxruntime" and (precision not in ("fp32", "int8") or net.device.type != "cpu"):
            raise ValueError(f"the onnxruntime backend runs fp32 or int8 on the cpu (asked: {precision} on {net.device})")
        if backend == "openvino" and net.device.type != "cpu":
            raise ValueError(f"the openvino backend runs on the cpu (asked: {net.device})")
        self.precision, self.backend = precision, backend
        self._device = net.device
        if precision == "bf16" and backend == "torch" and net.device.type == "cpu" and not cpu_runs_bf16():
            warnings.warn("bf16 on this CPU (no AVX512-BF16 or AMX) is emulated and several times slower than "
                          "fp32: use precision fp32 here", SlowPrecisionWarning, stacklevel=2)
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        prepack = backend == "torch" and not single_forward and prepacking_available(self._device, dtype)
        # prepacked convs reorder the weights themselves and write NHWC outputs: no channels_last copy
        self.net = fuse_for_inference(net, channels_last=not (prepack or single_forward), in_place=in_place)
        # the [yolo] / [Gaussian_yolo] layers, which run in float32 in bf16 mode (on up-cast inputs)
        self._yolo_layers = list(self.net._output_layers)
        self._float32_from = self._float32_start()
        self._session = None
        if backend in _SESSIONS:
            model = quantize_network(self.net, calibration, backend) if precision == "int8" else _onnx_bytes(self.net)
            self._session = _SESSIONS[backend](model, precision)
        if backend == "torch":
            self._prepare_trunk(dtype, prepack, winograd)
        self.eval()

    def _prepare_trunk(self, dtype: torch.dtype, prepack: bool, winograd: bool | None) -> None:
        """Cast the layers before `_float32_from` but the [yolo] ones to `dtype` (bf16 only), make the [yolo]
        layers up-cast their inputs, and prepack the convs (CPU)."""
        upto = self._float32_from if dtype != torch.float32 else None
        if upto is not None:
            for index, layer in enumerate(self.net.layers[:upto]):
                if index in self._yolo_layers:
                    layer.register_forward_pre_hook(_float32_inputs)
                else:
                    layer.to(dtype)
        if prepack:
            give_heads_nchw_inputs(self.net)
            prepack_convolutions(self.net, dtype, upto, winograd)

    # what detect(), classify() and validation read from a Darknet, answered by the fused net
    region = property(lambda self: self.net.region)
    layers = property(lambda self: self.net.layers)
    hierarchy = property(lambda self: self.net.hierarchy)
    width = property(lambda self: self.net.width)
    height = property(lambda self: self.net.height)
    channels = property(lambda self: self.net.channels)
    cfg_path = property(lambda self: self.net.cfg_path)
    options = property(lambda self: self.net.options)
    output_shape = property(lambda self: self.net.output_shape)
    device = property(lambda self: self._device)

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        if self._session is not None:
            outputs = [torch.from_numpy(output) for output in
                       self._session(x.detach().float().cpu().contiguous().numpy())]
            return outputs[0] if len(outputs) == 1 else outputs
        if self.precision == "bf16":
            return self._bf16_forward(x)
        return self.net(x)

    def _float32_start(self) -> int:
        """The index of the layer that runs in float32 in bf16 mode: the last one, a region / softmax / cost
        layer; or one past it when the last layer holds weights (a trunk ending in a conv: all in bf16) or
        when the net has [yolo] layers (they run in float32 where they are, the layers after them in bf16)."""
        last = len(self.net.layers) - 1
        if self._yolo_layers or isinstance(self.net.layers[last],
                                           (ConvolutionalLayer, ConnectedLayer, PrepackedConvolution)):
            return last + 1
        return last

    def _bf16_forward(self, x: Tensor) -> Tensor | list[Tensor]:
        net, last = self.net, self._float32_from
        if last == len(net.layers):
            output = net(x.to(torch.bfloat16))
            return output.float() if isinstance(output, Tensor) else [part.float() for part in output]
        sources = net.info[last].sources
        outputs = net.run(x.to(torch.bfloat16), keep=set(sources), upto=last)
        return net.layers[last](*(outputs[source].float() for source in sources))

    def extra_repr(self) -> str:
        return f"precision={self.precision}, backend={self.backend}"


def _float32_inputs(_module: nn.Module, inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return tuple(x.float() for x in inputs)


def _check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{what} must be one of {', '.join(choices)}; got {value!r}")


def _onnx_bytes(net: Darknet) -> bytes:
    model = io.BytesIO()
    export_network(net, model)
    return model.getvalue()


def fast_precision(device: torch.device, backend: str = "torch", calibration: Calibration | None = None) -> str:
    """What precision "fast" runs: bf16 on a GPU and where the CPU has AVX512-BF16 or AMX (not with onnxruntime,
    which has no bf16 path), else int8 on the CPU when calibration images are given, else fp32."""
    if torch.device(device).type != "cpu" or (backend != "onnxruntime" and cpu_runs_bf16()):
        return "bf16"
    return "int8" if calibration is not None else "fp32"


def _int8_backend(net: Darknet, backend: str, calibration: Calibration | None) -> str:
    """The runtime of an int8 net: the backend asked for, or for backend torch OpenVINO where it is installed (the
    faster on AVX2), else onnxruntime; a DarknetError without calibration images."""
    if calibration is None:
        raise DarknetError("precision int8 needs calibration images: calibration= a list file or a list of "
                           "image paths (on the command line: -calibration LIST)")
    if net.device.type != "cpu":
        raise ValueError(f"precision int8 runs on the cpu (asked: {net.device})")
    if backend != "torch":
        return backend
    return "openvino" if importlib.util.find_spec("openvino") is not None else "onnxruntime"


def _onnxruntime_session(model: bytes, _precision: str) -> Callable[[np.ndarray], list[np.ndarray]]:
    """An onnxruntime CPU session of an ONNX `model`, threads as torch's; it returns every output."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {INPUT_NAME: x})


def _openvino_session(model: bytes, precision: str) -> Callable[[np.ndarray], list[np.ndarray]]:
    """An ONNX `model` compiled by OpenVINO for the CPU (threads as torch's, latency hint); it returns every
    output. An int8 (QDQ) model runs its quantized convs in int8 and the rest in f32."""
    try:
        import openvino
    except ImportError:
        raise DarknetError("the openvino backend needs the openvino package: pip install openvino") from None
    core = openvino.Core()
    compiled = core.compile_model(core.read_model(model), "CPU", {
        "INFERENCE_NUM_THREADS": torch.get_num_threads(), "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": {"fp32": "f32", "bf16": "bf16", "int8": "f32"}[precision]})
    request = compiled.create_infer_request()

    def run(x: np.ndarray) -> list[np.ndarray]:
        result = request.infer([x])
        return [result[index].copy() for index in range(len(compiled.outputs))]   # the request reuses its buffers
    return run


_SESSIONS = {"onnxruntime": _onnxruntime_session, "openvino": _openvino_session}


def load_inference_network(cfg: str | os.PathLike, weights: str | os.PathLike, device: str | torch.device = "cpu",
                           precision: str = "fp32", backend: str = "torch",
                           calibration: Calibration | None = None, winograd: bool | None = None) -> InferenceNetwork:
    """Load a cfg and its weights as an `InferenceNetwork` (eval mode, gradients off) on `device`."""
    return InferenceNetwork(load_network(cfg, weights, device), precision, backend, in_place=True,
                            calibration=calibration, winograd=winograd)
