"""Darknet `.weights` files: read and write, walking one list of tensors per layer.

Layout (DARKNET(parser.c:load_weights_upto / save_weights_upto)): int32 major, minor, revision, then
`seen` as uint64 when major*10+minor >= 2 (and both < 1000), else as int32; then, layer by layer in
cfg order, each layer's `darknet_tensors()` as little-endian float32.
"""
from __future__ import annotations

import os
import struct
import sys
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from .errors import MissingFileError, WeightsError
from .fileio import check_regular_file, write_atomically
from .layers.conv import ConnectedLayer

FLOAT = np.dtype("<f4")
SEEN_OFFSET = 12            # byte offset of `seen` in the header
HEADER_MAX_BYTES = 20       # the header with a 64-bit seen
ABSURD_SEEN = 2 ** 62       # more images than any training run sees: a corrupt header, not a count
DARKNET_VERSION = (0, 2, 0)  # DARKNET(parser.c:save_weights_upto): what pjreddie's Darknet writes


class PartialWeightsWarning(UserWarning):
    """A weights file that ends at a layer boundary before the net does (e.g. darknet19_448.conv.23)."""


@dataclass(frozen=True)
class WeightsHeader:
    major: int
    minor: int
    revision: int
    seen: int

    @property
    def seen_is_64bit(self) -> bool:
        # DARKNET(parser.c:load_weights_upto): a size_t seen from version 0.2 on
        return self.major * 10 + self.minor >= 2 and self.major < 1000 and self.minor < 1000

    @property
    def transpose(self) -> bool:
        # DARKNET(parser.c:load_weights_upto): connected weights stored inputs x outputs
        return self.major > 1000 or self.minor > 1000

    @property
    def nbytes(self) -> int:
        return 20 if self.seen_is_64bit else 16

    def pack(self) -> bytes:
        seen_format = "<Q" if self.seen_is_64bit else "<I"
        return struct.pack("<3i", self.major, self.minor, self.revision) + struct.pack(seen_format, self.seen)

    @classmethod
    def unpack(cls, data: bytes, path: str) -> "WeightsHeader":
        if len(data) < 16:
            raise WeightsError(f"{path}: {len(data)} bytes is too short for a Darknet weights header")
        major, minor, revision = struct.unpack_from("<3i", data)
        if min(major, minor, revision) < 0 or max(major, minor) > 100000:
            raise WeightsError(f"{path}: not a Darknet weights file (header version {major}.{minor}.{revision})")
        header = cls(major, minor, revision, 0)
        if header.seen_is_64bit and len(data) < 20:
            raise WeightsError(f"{path}: header of version {major}.{minor} needs 20 bytes, file has {len(data)}")
        (seen,) = struct.unpack_from("<Q" if header.seen_is_64bit else "<I", data, SEEN_OFFSET)
        if seen >= ABSURD_SEEN:
            raise WeightsError(f"{path}: byte offset {SEEN_OFFSET}: seen = {seen} images is absurd (>= 2^62): "
                               f"a corrupt header, or not a Darknet weights file")
        return cls(major, minor, revision, seen)

    def saved_version(self) -> tuple[int, int, int]:
        """The (major, minor, revision) a re-save writes, so that load -> save is byte-identical."""
        if self.transpose:
            return DARKNET_VERSION  # connected weights are written outputs x inputs, so no longer transposed
        # DIVERGES: Darknet always writes its own version (pjreddie 0.2.0, AlexeyAB 0.2.5); keeping the
        # file's (and, for 0.1 files, its 32-bit seen) makes a re-save of either byte-identical
        return self.major, self.minor, self.revision


@dataclass(frozen=True)
class LoadReport:
    header: WeightsHeader
    layers_loaded: int        # layers with weights that were filled from the file
    layers_with_weights: int  # layers with weights in the net (up to the cutoff)
    floats_read: int

    @property
    def partial(self) -> bool:
        return self.layers_loaded < self.layers_with_weights


def _weighted_layers(net, cutoff: int | None, skip_flag: str):
    count = len(net.layers) if cutoff is None else min(cutoff, len(net.layers))
    for index in range(count):
        tensors = net.layers[index].darknet_tensors()
        if tensors and not getattr(net.flags[index], skip_flag):
            yield index, net.layers[index], tensors


def load_weights(net, path: str | os.PathLike, cutoff: int | None = None) -> LoadReport:
    """Fill `net` (layers 0..cutoff-1) from a Darknet weights file; sets `net.seen`.

    A file that ends exactly between two layers loads what it holds and warns (Darknet's partial
    files); a net built with `initialise=False` is initialised first, so the layers the file does not
    reach hold what `Darknet.from_cfg` gives them. A file that ends inside a layer, or holds more
    floats than the net, raises WeightsError before any layer is touched. The file is read once,
    straight into the tensors; a non-finite value raises WeightsError once its layer is read, so the
    net then holds the file's values up to that layer.
    """
    path = str(path)
    check_regular_file(path, "weights file")   # a FIFO would block open() forever
    try:
        file = open(path, "rb")
    except OSError as exc:
        raise MissingFileError(f"cannot read weights file {path}: {exc.strerror}") from None
    with file:
        size = os.fstat(file.fileno()).st_size
        header = WeightsHeader.unpack(file.read(HEADER_MAX_BYTES), path)
        body_bytes = size - header.nbytes
        if body_bytes % 4:
            raise WeightsError(f"{path}: body of {body_bytes} bytes is not a whole number of float32 values")
        filled, total = _layers_filled(net, cutoff, body_bytes // 4, path)
        fills_every_layer = len(filled) == sum(1 for layer in net.layers if layer.darknet_tensors())
        deferred = not getattr(net, "initialised", True)   # built with initialise=False
        if deferred and not fills_every_layer:
            # DARKNET(parser.c:load_weights_upto): layers past the file's end (or the cutoff, or with
            # dontload=1) keep their initialisation
            net.initialise()
        file.seek(header.nbytes)
        offset = 0
        for index, layer, tensors in filled:
            offset = _read_layer(file, path, header, index, net.kinds[index], layer, tensors, offset)
        if deferred and fills_every_layer:
            net.mark_initialised()   # every weight came from the file
    report = LoadReport(header, len(filled), total, offset)
    if report.partial:
        warnings.warn(f"{path}: partial weights file, loaded {len(filled)} of {total} layers with weights; "
                      f"the rest keep their initial values", PartialWeightsWarning, stacklevel=2)
    net.seen = header.seen
    net.weights_version = header.saved_version()
    return report


def _layers_filled(net, cutoff: int | None, floats: int, path: str) -> tuple[list, int]:
    """The (index, layer, tensors) that a body of `floats` values fills, in file order, and the count of
    layers with weights up to the cutoff; a WeightsError when the size fits no layer boundary."""
    filled, total, offset = [], 0, 0
    for index, layer, tensors in _weighted_layers(net, cutoff, "dontload"):
        total += 1
        needed = sum(t.numel() for t in tensors)
        if offset == floats:
            continue  # DARKNET(parser.c:load_weights_upto): fread at EOF leaves the rest as initialised
        if offset + needed > floats:
            raise WeightsError(f"{path}: file ends inside layer {index} ({net.kinds[index]}): it needs "
                               f"{needed} floats, {floats - offset} are left — truncated, or not for this cfg")
        filled.append((index, layer, tensors))
        offset += needed
    if offset < floats and cutoff is None:
        raise WeightsError(f"{path}: {floats - offset} floats are left after the last layer of the net "
                           f"({offset} used): the file is for a different (larger) cfg")
    return filled, total


def _read_layer(file, path: str, header: WeightsHeader, index: int, kind: str, layer, tensors: list[torch.Tensor],
                offset: int) -> int:
    """Read one layer's tensors from `file` (at body float `offset`), check them; returns the next offset."""
    for tensor in tensors:
        transposed = header.transpose and isinstance(layer, ConnectedLayer) and tensor is layer.op.weight
        values = _read_tensor(file, path, tensor, transposed)
        _check_finite(values, path, index, kind, header.nbytes + 4 * offset)
        offset += tensor.numel()
    return offset


def _read_tensor(file, path: str, tensor: torch.Tensor, transposed: bool) -> np.ndarray:
    """Read `tensor.numel()` floats from `file` into `tensor`; returns them as the file holds them.

    A contiguous float32 CPU tensor is read into directly (no copy); any other goes through one buffer.
    """
    target = tensor.detach()
    direct = (not transposed and target.device.type == "cpu" and target.dtype == torch.float32
              and target.is_contiguous() and sys.byteorder == "little")
    values = target.numpy().reshape(-1) if direct else np.empty(target.numel(), FLOAT)
    if file.readinto(memoryview(values).cast("B")) != values.nbytes:
        raise WeightsError(f"{path}: the file got shorter while it was read")
    if not direct:
        # DARKNET(parser.c:load_weights_upto): transpose = connected weights stored inputs x outputs
        source = values.reshape(target.shape[1], target.shape[0]).T if transposed else values
        with torch.no_grad():
            target.copy_(torch.from_numpy(np.ascontiguousarray(source, dtype=np.float32)).view_as(target))
    return values


def _check_finite(values: np.ndarray, path: str, index: int, kind: str, start: int) -> None:
    """DIVERGES: Darknet loads NaN/inf weights and then outputs NaN; a file holding them is refused."""
    if np.isfinite(values).all():
        return
    bad = np.flatnonzero(~np.isfinite(values))
    raise WeightsError(f"{path}: layer {index} ({kind}) holds a non-finite value ({values[bad[0]]}) at byte "
                       f"offset {start + 4 * int(bad[0])}: the file is corrupt")


def weights_bytes(net, cutoff: int | None = None, seen: int | None = None) -> bytes:
    """The bytes of a weights file for `net` (layers 0..cutoff-1), as Darknet writes it, with the header
    version of the file `net` was loaded from (`net.weights_version`; Darknet's 0.2.0 for a new net)."""
    header = WeightsHeader(*net.weights_version, net.seen if seen is None else seen)
    parts = [header.pack()]
    for _, _, tensors in _weighted_layers(net, cutoff, "dontsave"):
        parts.extend(t.detach().to("cpu", torch.float32).contiguous().numpy().astype(FLOAT).tobytes()
                     for t in tensors)
    return b"".join(parts)


def save_weights(net, path: str | os.PathLike, cutoff: int | None = None, seen: int | None = None) -> None:
    """Write a weights file the C Darknet reads back; atomically (temp file, then rename)."""
    write_atomically(path, weights_bytes(net, cutoff, seen))
