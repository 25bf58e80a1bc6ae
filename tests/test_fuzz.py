"""Fuzzing cfg text and weights bytes: every example ends in a net whose forward on a tiny input is
finite, or in a DarknetError; never another exception, a hang, or a non-finite output.

The bounded run is part of the normal suite (fixed seed, a few hundred examples); `make fuzz` runs
the long one (`-m fuzz` with $PYDARKNET_FUZZ_EXAMPLES examples per test, 10,000 there).
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pydarknet.cfg import parse_cfg_text
from pydarknet.errors import DarknetError
from pydarknet.layers.activations import ACTIVATIONS
from pydarknet.network import Darknet
from pydarknet.registry import registered
from pydarknet.weights import load_weights, weights_bytes

REPO = Path(__file__).resolve().parent.parent
MAX_SIDE = 64           # input sides are forced down to this, so each example stays well under a second
# The build bound for fuzzed nets: the library's default (16 GiB) admits a 16 GiB input image, whose
# forward takes a minute (found by the long run: width=2147483647 height=1 channels=2).
FUZZ_BUILD_BYTES = 256 * 2 ** 20
LONG_ENV = "PYDARKNET_FUZZ_EXAMPLES"
LONG_EXAMPLES = int(os.environ.get(LONG_ENV, "0"))
long_run = pytest.mark.skipif(not LONG_EXAMPLES, reason=f"the long fuzz run: make fuzz (sets ${LONG_ENV})")

def shrink(text: str) -> str:
    """A seed cut down to build and run fast: input sides above MAX_SIDE become MAX_SIDE (the seeds are
    multiples of 32, so strides still divide), and filters are divided by 16 except in the conv before a
    [region]/[yolo], whose filters the head checks."""
    text = re.sub(r"^(\s*(?:width|height)\s*=\s*)(\d+)",
                  lambda m: m.group(1) + str(min(int(m.group(2)), MAX_SIDE)), text, flags=re.M)
    sections = re.split(r"(?m)^(?=\[)", text)
    for i, section in enumerate(sections[:-1]):
        if not sections[i + 1].startswith(("[region]", "[yolo]")):
            sections[i] = re.sub(r"(?m)^(filters\s*=\s*)(\d+)",
                                 lambda m: m.group(1) + str(max(int(m.group(2)) // 16, 1)), section)
    return "".join(sections)


# Real cfgs small enough to build in a fraction of a second, and mini cfgs like the tests' own.
SEED_CFGS = [shrink((REPO / "cfg" / name).read_text()) for name in
             ("yolov2-tiny-voc.cfg", "yolov3-tiny.cfg", "yolov2-voc.cfg", "darknet19.cfg", "synth-tiny.cfg")]
SEED_CFGS += [
    "[net]\nwidth=16\nheight=16\nchannels=3\n\n[convolutional]\nbatch_normalize=1\nfilters=4\nsize=3\npad=1\n"
    "activation=leaky\n\n[maxpool]\nsize=2\nstride=2\n\n[convolutional]\nfilters=4\nsize=1\n\n[avgpool]\n\n"
    "[softmax]\ngroups=1\n\n[cost]\ntype=sse\n",
    "[net]\nwidth=32\nheight=32\nchannels=3\nbatch=4\nsubdivisions=2\npolicy=steps\nsteps=10,20\nscales=.1,.1\n\n"
    "[convolutional]\nfilters=8\nsize=3\nstride=2\npad=1\nactivation=leaky\n\n[reorg]\nstride=2\n\n"
    "[route]\nlayers=-1,-2\n\n[convolutional]\nfilters=20\nsize=1\nactivation=linear\n\n"
    "[region]\nanchors=1,1,2,2\nclasses=5\nnum=2\nsoftmax=1\n",
    "[net]\nwidth=8\nheight=8\nchannels=2\n\n[connected]\noutput=6\nactivation=relu\n\n[dropout]\nprobability=.5\n\n"
    "[connected]\noutput=4\nbatch_normalize=1\n\n[softmax]\ngroups=2\ntemperature=2\n",
    "[net]\nwidth=16\nheight=16\nchannels=3\n\n[convolutional]\nfilters=4\nsize=3\npad=1\n\n[shortcut]\nfrom=-1\n"
    "activation=linear\n\n[upsample]\nstride=2\n\n[convolutional]\nfilters=18\nsize=1\n\n"
    "[yolo]\nmask=0,1,2\nanchors=1,1,2,2,3,3\nclasses=1\nnum=3\n\n[route]\nlayers=-4\n",
]

EDGE_NUMBERS = ["0", "-1", "1", "2", "3", "7", "64", "-64", "2147483647", "2147483648", "-2147483649",
                "99999999999999999999", "4294967296", "nan", "inf", "-inf", "0.0", "1e-45", ".5", "-0.5",
                "1,2", ",", "1e", ""]
KNOWN_KEYS = sorted({line.split("=", 1)[0].strip() for text in SEED_CFGS for line in text.splitlines()
                     if "=" in line and not line.lstrip().startswith("#")})
# every registered section name (aliases too), [net] out of place, and names no builder takes
SECTIONS = ["net", *registered(), "crop", ""]
NUMBER = re.compile(r"-?[0-9.]+(e-?[0-9]+)?")


@st.composite
def mutated_cfg(draw) -> bytes:
    lines = draw(st.sampled_from(SEED_CFGS)).split("\n")
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["number", "number", "number", "delete", "duplicate", "swap", "key", "section",
                                   "bytes"]))
        if op == "number" and NUMBER.search(lines[i]):
            edge = draw(st.sampled_from(EDGE_NUMBERS))
            matches = list(NUMBER.finditer(lines[i]))
            m = matches[draw(st.integers(0, len(matches) - 1))]
            lines[i] = lines[i][:m.start()] + edge + lines[i][m.end():]
        elif op == "delete" and len(lines) > 1:
            del lines[i]
        elif op == "duplicate":
            lines.insert(draw(st.integers(0, len(lines))), lines[i])
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "key" and "=" in lines[i]:
            lines[i] = draw(st.sampled_from(KNOWN_KEYS)) + "=" + lines[i].split("=", 1)[1]
        elif op == "section" and lines[i].startswith("["):
            lines[i] = f"[{draw(st.sampled_from(SECTIONS))}]"
    data = "\n".join(lines).encode()
    if draw(st.integers(0, 9)) == 0:
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at:]
    return data


def _value(draw, normal):
    return draw(st.sampled_from(EDGE_NUMBERS)) if draw(st.integers(0, 5)) == 0 else str(draw(normal))


SMALL = st.integers(1, 4)
LAYER_KEYS = {
    "convolutional": {"filters": st.integers(1, 8), "size": SMALL, "stride": st.integers(1, 3),
                      "pad": st.integers(0, 1), "padding": st.integers(0, 3), "groups": st.integers(1, 2),
                      "batch_normalize": st.integers(0, 1), "activation": st.sampled_from([*ACTIVATIONS, "swish"])},
    "maxpool": {"size": SMALL, "stride": st.integers(1, 3), "padding": st.integers(0, 5)},
    "avgpool": {},
    "connected": {"output": st.integers(1, 16), "activation": st.sampled_from(list(ACTIVATIONS))},
    "softmax": {"groups": SMALL, "temperature": st.sampled_from([0.5, 1, 2, 0])},
    "route": {"layers": st.sampled_from(["-1", "-2", "-1,-2", "-3,-1", "0"])},
    "reorg": {"stride": st.integers(1, 3)},
    "shortcut": {"from": st.sampled_from(["-1", "-2", "-3", "0"]), "alpha": st.sampled_from([1, 0.5, -2]),
                 "activation": st.sampled_from(["linear", "leaky"])},
    "upsample": {"stride": st.integers(1, 3), "scale": st.sampled_from([1, 0.5])},
    "dropout": {"probability": st.sampled_from([0, 0.5, 0.9])},
    "region": {"classes": st.integers(1, 3), "num": st.integers(1, 3), "coords": st.sampled_from([4, 5]),
               "softmax": st.integers(0, 1)},
    "yolo": {"classes": st.integers(1, 3), "num": st.integers(1, 3), "mask": st.sampled_from(["0", "0,1", "1"])},
    "cost": {"type": st.sampled_from(["sse", "L1", "bad"])},
}


@st.composite
def grammar_cfg(draw) -> bytes:
    side = st.integers(1, 32)
    parts = [f"[net]\nwidth={_value(draw, side)}\nheight={_value(draw, side)}\nchannels={_value(draw, SMALL)}\n"]
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(sorted(LAYER_KEYS)))
        keys = LAYER_KEYS[kind]
        chosen = draw(st.lists(st.sampled_from(sorted(keys)), unique=True)) if keys else []
        if kind in ("region", "yolo") and draw(st.booleans()):
            # most heads get the conv they need, so the builds go on past them
            classes, num = draw(keys["classes"]), draw(keys["num"])
            filters = num * (5 + classes)
            parts.append(f"[convolutional]\nfilters={filters}\nsize=1\n")
            parts.append(f"[{kind}]\nclasses={classes}\nnum={num}\n")
            continue
        body = "".join(f"{key}={_value(draw, keys[key])}\n" for key in chosen)
        parts.append(f"[{kind}]\n{body}")
    return "\n".join(parts).encode()


def _tiny_input(c: int, h: int, w: int) -> torch.Tensor:
    return torch.rand(1, c, h, w, generator=torch.Generator().manual_seed(0))


def _built(data: bytes, tmp: Path) -> Darknet | None:
    """The eval-mode net of the cfg `data` (seed 0), or None when it is refused with a DarknetError."""
    path = tmp / "fuzz.cfg"
    path.write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return Darknet.from_cfg(path, seed=0, max_build_bytes=FUZZ_BUILD_BYTES).eval()
        except DarknetError:
            return None


def check_cfg(data: bytes, tmp: Path) -> None:
    """Build and run; any outcome but a finite output or a DarknetError fails the example."""
    net = _built(data, tmp)
    if net is None:
        return
    with torch.no_grad():
        output = net(_tiny_input(net.channels, net.height, net.width))
    for tensor in output if isinstance(output, list) else [output]:
        assert torch.isfinite(tensor).all(), f"non-finite output of\n{data.decode(errors='replace')}"


def fuzz_settings(examples: int, long: bool = False):
    # deadlines catch hangs; they are generous because the machines running the suite are shared
    return settings(max_examples=max(examples, 1), deadline=30000 if long else 10000, derandomize=not long,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
                    database=None)


@fuzz_settings(150)
@given(data=mutated_cfg())
def test_mutated_cfgs(tmp_path, data):
    check_cfg(data, tmp_path)


@fuzz_settings(150)
@given(data=grammar_cfg())
def test_grammar_cfgs(tmp_path, data):
    check_cfg(data, tmp_path)


WEIGHTS_CFG = ("[net]\nwidth=8\nheight=8\nchannels=2\n\n[convolutional]\nbatch_normalize=1\nfilters=3\nsize=3\n"
               "pad=1\nactivation=leaky\n\n[maxpool]\nsize=2\nstride=2\n\n[convolutional]\nfilters=2\nsize=1\n\n"
               "[connected]\noutput=5\n\n[softmax]\n")


def _weights_net() -> Darknet:
    net = Darknet(parse_cfg_text(WEIGHTS_CFG, "weights-fuzz.cfg"))
    net.reset_parameters(seed=0)   # examples must replay byte for byte
    return net.eval()


VALID_WEIGHTS = weights_bytes(_weights_net())


@st.composite
def weights_file(draw) -> bytes:
    valid = VALID_WEIGHTS
    op = draw(st.sampled_from(["truncate", "extend", "header", "flip", "garbage", "valid"]))
    if op == "truncate":
        return valid[:draw(st.integers(0, len(valid) - 1))]
    if op == "extend":
        return valid + draw(st.binary(min_size=1, max_size=64))
    if op == "header":
        return draw(st.binary(min_size=0, max_size=24)) + valid[20:]
    if op == "flip":
        data = bytearray(valid)
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    if op == "garbage":
        return draw(st.binary(min_size=0, max_size=len(valid) + 8))
    return valid


def check_weights(data: bytes, tmp: Path) -> None:
    """A weights file loads into finite tensors (and the forward runs) or is a DarknetError."""
    path = tmp / "fuzz.weights"
    path.write_bytes(data)
    net = _weights_net()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            load_weights(net, path)
        except DarknetError:
            return
    assert all(torch.isfinite(t).all() for layer in net.layers for t in layer.darknet_tensors())
    with torch.no_grad():
        net(_tiny_input(2, 8, 8))   # finite weights may still overflow: only exceptions fail here


@fuzz_settings(100)
@given(data=weights_file())
def test_weights_bytes(tmp_path, data):
    check_weights(data, tmp_path)


@pytest.mark.fuzz
@long_run
@fuzz_settings(LONG_EXAMPLES, long=True)
@given(data=st.one_of(mutated_cfg(), grammar_cfg()))
def test_long_cfgs(tmp_path, data):
    check_cfg(data, tmp_path)


@pytest.mark.fuzz
@long_run
@fuzz_settings(LONG_EXAMPLES, long=True)
@given(data=weights_file())
def test_long_weights(tmp_path, data):
    check_weights(data, tmp_path)


@fuzz_settings(100)
@given(data=grammar_cfg())
def test_inference_networks_of_grammar_cfgs_give_the_fused_nets_output(tmp_path, data):
    """Every net that builds runs as an `InferenceNetwork` (prepacked convs on the CPU, any size, stride,
    padding, groups and activation) to the fused net's floats, within 1e-5 of the largest value; and in bf16."""
    from pydarknet.fuse import fuse_for_inference
    from pydarknet.inference import InferenceNetwork

    net = _built(data, tmp_path)
    if net is None:
        return
    x = _tiny_input(net.channels, net.height, net.width)
    with torch.inference_mode():
        want = fuse_for_inference(net)(x)
        got = InferenceNetwork(net)(x)
        bf16 = InferenceNetwork(net, precision="bf16")(x) if len(net._output_layers) <= 1 else got
    for g, w in zip(got if isinstance(got, list) else [got], want if isinstance(want, list) else [want]):
        assert g.shape == w.shape and (g - w).abs().max() <= 1e-5 * max(w.abs().max(), 1.0), data.decode()
    for b in bf16 if isinstance(bf16, list) else [bf16]:   # bf16: runs, float32 out (its accuracy: test_inference*)
        assert b.dtype == torch.float32, data.decode()


# ---- Images, Darknet's text files and the dataset converters' inputs (issue 20) ----------------------------
# Any outcome but a decoded (H, W, 3) uint8 array of at most FUZZ_MAX_PIXELS pixels (an image) or a
# DarknetError fails an example; so does a peak memory FUZZ_MEMORY_BYTES above the first example's, and,
# for the converters, a file written outside the output folder and the dataset's label folders.

FUZZ_MAX_PIXELS = 2 ** 20          # the pixel limit passed to load_image: headers above it must be refused
FUZZ_MEMORY_BYTES = 512 * 2 ** 20  # what decoding a file within that limit may add to the peak (ru_maxrss)
HEADER_BYTES = 64                  # mutations land here 7 times in 8: sizes, depths, chunk lengths, markers
EDGE_INTS = [0, 1, 2, 3, 7, 8, 15, 16, 255, 256, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000,
             0xFFFFFFFF, 20000, 30000, 100000]


def _image_seeds() -> dict[str, bytes]:
    from bad_images import seeds

    return seeds()


IMAGE_SEEDS = _image_seeds()
_PEAK: list[int] = []   # ru_maxrss (bytes) at the first image example


@st.composite
def mutated_image(draw) -> bytes:
    """A seed JPEG/PNG/BMP/GIF/TGA with 1-4 mutations, mostly in its header: a byte, a 16- or 32-bit
    field set to an edge value (big- or little-endian), a cut, an insertion or a run of bytes removed."""
    data = bytearray(IMAGE_SEEDS[draw(st.sampled_from(sorted(IMAGE_SEEDS)))])
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        end = min(len(data), HEADER_BYTES) if draw(st.integers(0, 7)) else len(data)
        at = draw(st.integers(0, end - 1))
        op = draw(st.sampled_from(["byte", "int", "int", "cut", "insert", "remove"]))
        if op == "byte":
            data[at] = draw(st.integers(0, 255))
        elif op == "int":
            width = draw(st.sampled_from([2, 4]))
            value = draw(st.sampled_from(EDGE_INTS)) % (1 << 8 * width)
            data[at:at + width] = value.to_bytes(width, draw(st.sampled_from(["big", "little"])))
        elif op == "cut":
            del data[draw(st.integers(0, len(data) - 1)):]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[at:at + draw(st.integers(1, 16))]
    return bytes(data)


def check_image(data: bytes, tmp: Path) -> None:
    """Both decoders: a decoded array within the pixel limit, or a DarknetError; and bounded memory."""
    import resource

    from pydarknet.image import load_image

    path = tmp / "fuzz.img"
    path.write_bytes(data)
    for decoder in ("stb", "opencv"):
        try:
            image = load_image(path, decoder, max_pixels=FUZZ_MAX_PIXELS)
        except DarknetError:
            event(f"{decoder}: refused")
            continue
        event(f"{decoder}: decoded")
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, image.shape
        assert image.shape[0] * image.shape[1] <= FUZZ_MAX_PIXELS, image.shape
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # KiB on Linux
    if not _PEAK:
        _PEAK.append(peak)
    assert peak - _PEAK[0] < FUZZ_MEMORY_BYTES, f"peak memory grew by {(peak - _PEAK[0]) / 2 ** 20:.0f} MiB"


TEXT_EDGES = ["0", "-1", "2", "3", "1e9", "nan", "inf", "-inf", "", " ", "=", "==", "#", ";", "\t", "\r",
              "\x00", "\ufeff", "é", "/", "..", "../../etc/passwd", "a b", "2147483648", "0.5", ".5e-3"]
DATA_KEYS_FUZZ = ["classes", "train", "valid", "names", "backup", "eval", "results", "map", "tree", "labels",
                  "top", "bogus", ""]


def _text_line(draw, kind: str) -> str:
    edge = st.sampled_from(TEXT_EDGES)
    if kind == "data":
        return f"{draw(st.sampled_from(DATA_KEYS_FUZZ))}{draw(st.sampled_from(['=', ' = ', '', '==']))}{draw(edge)}"
    if kind == "label":
        fields = [draw(st.sampled_from(["0", "1", "2", "3", "-1", "0.5", "0.25", "1.5", "0", *TEXT_EDGES]))
                  for _ in range(draw(st.integers(0, 7)))]
        return draw(st.sampled_from([" ", "\t", "  "])).join(fields)
    return draw(st.one_of(edge, st.text(max_size=12)))   # a name or a list path


@st.composite
def text_file(draw) -> tuple[str, bytes]:
    """(kind, bytes) of a .data, .names, list or label file: grammar lines, edge values, bad bytes."""
    kind = draw(st.sampled_from(["data", "names", "list", "label"]))
    lines = [_text_line(draw, kind) for _ in range(draw(st.integers(0, 8)))]
    data = draw(st.sampled_from(["\n", "\r\n", "\r"])).join(lines).encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 5)) == 0:
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=6)) + data[at:]
    return kind, data


def check_text_file(case: tuple[str, bytes], tmp: Path) -> None:
    """A parsed result (labels: finite, classes in range, sizes not negative) or a DarknetError."""
    kind, data = case
    from pydarknet.data.files import read_data_file, read_list, read_names
    from pydarknet.data.labels import read_labels

    path = tmp / f"fuzz.{kind}"
    path.write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if kind == "data":
                config = read_data_file(path)
                for key in list(config.options):
                    config.get_str(key)
            elif kind == "names":
                assert all(name.strip() for name in read_names(path))
            elif kind == "list":
                assert all(line.strip() for line in read_list(path))
            else:
                truths = read_labels(path, classes=3)
                assert np.isfinite(truths).all() and truths.shape[1] == 5
                assert ((truths[:, 4] >= 0) & (truths[:, 4] < 3)).all()
        except DarknetError:
            event(f"{kind}: refused")
            return
    event(f"{kind}: read")


CONVERTER_EDGES = [float("nan"), float("inf"), -float("inf"), -1, 0, 1e30, 2 ** 63, "1", None, [], {}, True,
                   "../../../../victim/passwd", "/abs/x.jpg", "../x.jpg", "no_extension", "a\x00b.jpg", "x.jpeg",
                   "sub/dir/y.png", ""]


@st.composite
def coco_document(draw) -> dict:
    """A small COCO instances dict with 0-3 fields replaced by edge values or removed."""
    images = [{"id": i, "file_name": f"COCO_val2014_{i:012d}.jpg", "width": 40, "height": 30} for i in (1, 2)]
    annotations = [{"id": k, "image_id": 1 + k % 2, "category_id": (1, 2, 90)[k % 3], "iscrowd": 0,
                    "bbox": [1.0 * k, 2.0, 10.0, 8.0]} for k in range(4)]
    document = {"images": images, "annotations": annotations, "categories": [{"id": c} for c in (1, 2, 90)]}
    for _ in range(draw(st.integers(0, 3))):
        section = draw(st.sampled_from(["images", "annotations", "categories"]))
        entry = draw(st.sampled_from(document[section]))
        if not entry:
            continue
        key = draw(st.sampled_from(sorted(entry)))
        if key == "bbox" and isinstance(entry["bbox"], list) and len(entry["bbox"]) == 4 and draw(st.booleans()):
            entry["bbox"][draw(st.integers(0, 3))] = draw(st.sampled_from(CONVERTER_EDGES))
        elif draw(st.integers(0, 5)) == 0:
            del entry[key]
        else:
            entry[key] = draw(st.sampled_from(CONVERTER_EDGES))
    return document


def _files_outside(root: Path, *allowed: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not any(p.is_relative_to(folder) for folder in allowed)}


def check_coco(document: dict, tmp: Path) -> None:
    """convert_coco: a result or a DarknetError; no file outside OUT and the labels folder changes, and
    no label line holds a non-finite number."""
    import json
    import tempfile

    from pydarknet.data.coco import convert_coco

    root = Path(tempfile.mkdtemp(dir=tmp))
    images = root / "coco" / "images" / "val2014"
    images.mkdir(parents=True)
    (images / "COCO_val2014_000000000001.jpg").write_bytes(b"not decoded by the converter")
    (root / "victim").mkdir()
    (root / "victim" / "passwd").write_text("keep\n")
    instances = root / "instances_val2014.json"
    instances.write_text(json.dumps(document))
    labels, out = root / "coco" / "labels", root / "out"
    before = _files_outside(root, labels, out)
    try:
        convert_coco(instances, images, out)
        event("converted")
    except DarknetError:
        event("refused")
    assert _files_outside(root, labels, out) == before
    for label in labels.rglob("*.txt"):
        assert all(np.isfinite(float(v)) for line in label.read_text().splitlines() for v in line.split())


VOC_XML = ("<annotation><size><width>{w}</width><height>{h}</height></size>"
           "<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{xmin}</xmin>"
           "<xmax>{xmax}</xmax><ymin>{ymin}</ymin><ymax>{ymax}</ymax></bndbox></object></annotation>")
VOC_FIELDS = {"w": "100", "h": "50", "name": "dog", "difficult": "0", "xmin": "1", "xmax": "51", "ymin": "1",
              "ymax": "26"}
VOC_EDGES = ["nan", "inf", "-inf", "-1", "0", "1e30", "", "x", "1.5", "200", "<", "&amp;", "dog", "person"]


@st.composite
def voc_inputs(draw) -> tuple[str, list[str]]:
    """(annotation xml, image-set ids): fields replaced by edge values, markup cut, hostile ids."""
    fields = dict(VOC_FIELDS)
    for _ in range(draw(st.integers(0, 4))):
        fields[draw(st.sampled_from(sorted(fields)))] = draw(st.sampled_from(VOC_EDGES))
    xml = VOC_XML.format(**fields)
    if draw(st.integers(0, 5)) == 0:
        xml = xml[:draw(st.integers(0, len(xml)))]
    ids = ["000001", *draw(st.lists(st.sampled_from(["000001", "../../../victim/note", "/abs/id", "..", "a/b",
                                                      "x\x00y", "000002"]), max_size=2))]
    return xml, ids


def check_voc(case: tuple[str, list[str]], tmp: Path) -> None:
    """convert_voc: a result or a DarknetError; nothing outside OUT and the devkit's labels folders changes."""
    xml, ids = case
    import tempfile

    from pydarknet.data.voc import convert_voc

    root = Path(tempfile.mkdtemp(dir=tmp))
    year = root / "VOCdevkit" / "VOC2007"
    for folder in ("Annotations", "ImageSets/Main", "JPEGImages"):
        (year / folder).mkdir(parents=True)
    (year / "Annotations" / "000001.xml").write_text(xml)
    (year / "ImageSets" / "Main" / "train.txt").write_text("\n".join(ids) + "\n")
    (root / "victim").mkdir()
    (root / "victim" / "note.xml").write_text(VOC_XML.format(**VOC_FIELDS))
    labels, out = year / "labels", root / "out"
    before = _files_outside(root, labels, out)
    try:
        convert_voc(root / "VOCdevkit", out)
        event("converted")
    except DarknetError:
        event("refused")
    assert _files_outside(root, labels, out) == before
    for label in labels.rglob("*.txt"):
        for line in label.read_text().splitlines():
            values = [float(v) for v in line.split()]
            assert all(np.isfinite(values)) and values[3] >= 0 and values[4] >= 0, line


# target -> (strategy, check, examples in the bounded run)
INPUT_TARGETS = {"images": (mutated_image(), check_image, 150), "text_files": (text_file(), check_text_file, 200),
                 "coco": (coco_document(), check_coco, 100), "voc": (voc_inputs(), check_voc, 100)}


@pytest.mark.parametrize("target", sorted(INPUT_TARGETS))
def test_inputs(tmp_path, target):
    strategy, check, examples = INPUT_TARGETS[target]
    fuzz_settings(examples)(given(case=strategy)(lambda case: check(case, tmp_path)))()


@pytest.mark.fuzz
@long_run
@pytest.mark.parametrize("target", sorted(INPUT_TARGETS))
def test_long_inputs(tmp_path, target):
    strategy, check, _ = INPUT_TARGETS[target]
    fuzz_settings(LONG_EXAMPLES, long=True)(given(case=strategy)(lambda case: check(case, tmp_path)))()
