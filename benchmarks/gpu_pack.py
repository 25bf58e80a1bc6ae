"""The part of the reference pack a GPU check needs, small enough to travel with the checkout.

The pack (../shared/reference, 177 MB) does not travel to the GPU machine; at most 64 MiB do, checkout
included. `build` writes `.gpu_pack/<part>/reference.tar.xz` (git-ignored), `unpack` (on the GPU
machine) extracts it to `.gpu_pack/<part>.unpacked/`, the directory to give as $PYDARKNET_REFERENCE
(outside the carried `.gpu_pack/<part>`, which must hold the archive alone).

* ``mini``: the four mini nets (cfgs, weights, forward references; per-layer arrays only where the
  budget allows, `layers_stats.json` always) and the four training steps (no `after.weights`, no
  `region_output.npy`: neither the gpu tests nor parity.py read them) — what `gpu_check.sh` needs.
* ``full``: the four full-size nets (weights still xz-compressed, as in the pack; forward references).

Both carry README.md, MANIFEST.txt, weights.json, darknet/cfg and darknet/data (no JPEGs). The network
inputs are not carried: `unpack` rebuilds every `inputs/<img>_<S>x<S>.npy` and the training
`input.npy` files from the decoded images with `pydarknet.image.letterbox_image`, which is bit-exact
(README §4), and checks every file it wrote against MANIFEST.txt's sha256.

    python benchmarks/gpu_pack.py build [--reference ../shared/reference] [--parts mini full]
    python benchmarks/gpu_pack.py unpack .gpu_pack/mini
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tarfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from pydarknet.image import image_to_chw, letterbox_image  # noqa: E402

PACK_ROOT = REPO / ".gpu_pack"
ARCHIVE = "reference.tar.xz"
BUDGET_MIB = 50
MINI_NETS = ("mini-yolov2-voc", "mini-yolov2-tiny-voc", "mini-darknet19", "mini-yolo9000")
FULL_NETS = ("yolov2-voc", "yolov2-tiny-voc", "darknet19", "yolo9000")
# Per-layer arrays (dog only) in order of value per MiB; the ones past the budget are left out
# (parity.py then compares the layers' `layers_stats.json` instead).
LAYER_ARRAYS = ("mini-yolov2-tiny-voc", "mini-darknet19", "mini-yolov2-voc", "mini-yolo9000")
NOT_NEEDED = ("input.npy", "after.weights", "region_output.npy", "layer_deltas.npz", "region_hier_subset.npz", "stdout.txt",
              "cli_stdout.txt", "layers.npz")
# inputs/<img>_<S>x<S>.npy, and the training inputs: the letterboxed images stacked (README §6)
INPUT_SIZES = {"dog": (224, 256, 416, 544), "eagle": (256,), "horses": (224, 416, 544), "person": (224, 416, 544)}
TRAIN_INPUTS = {"mini-yolov2-voc_seen0": (("dog", "person"), 416), "mini-yolo9000_seen0": (("dog", "eagle"), 224)}


def manifest(reference: Path) -> dict[str, tuple[int, str]]:
    """path -> (size, sha256) from MANIFEST.txt."""
    rows = {}
    for line in (reference / "MANIFEST.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            size, digest, path = line.split(maxsplit=2)
            rows[path] = (int(size), digest)
    return rows


def common_files(files: dict[str, tuple[int, str]]) -> list[str]:
    wanted = ["README.md", "MANIFEST.txt", "weights.json"]
    wanted += [p for p in files if p.startswith("darknet/") and not p.endswith(".jpg")]
    return wanted + [p for p in files if p.endswith("_decoded_uint8_hwc.npy")]


def net_files(files: dict[str, tuple[int, str]], net: str) -> list[str]:
    """cfgs, weights, forward references (and training steps) of one net, large unread files left out."""
    own = [p for p in files if p.startswith((f"mini/{net}.", f"forward/{net}/", f"train/{net}_", f"weights/{net}."))]
    return [p for p in own if Path(p).name not in NOT_NEEDED and "minor1" not in p and ".conv." not in p]


def part_files(reference: Path, part: str) -> list[str]:
    files = manifest(reference)
    chosen = common_files(files)
    for net in MINI_NETS if part == "mini" else FULL_NETS:
        chosen += net_files(files, net)
    if part == "mini":
        budget = BUDGET_MIB * 2**20 - _compressed_estimate(reference, chosen)
        for net in LAYER_ARRAYS:
            path = f"forward/{net}/dog/layers.npz"
            cost = _compressed_estimate(reference, [path])
            if cost <= budget:
                chosen.append(path)
                budget -= cost
    return chosen


def _compressed_estimate(reference: Path, paths: list[str]) -> int:
    """Bytes after xz: measured on a 1 MiB sample of each file (float arrays compress by 10-40%)."""
    import lzma

    total = 0
    for path in paths:
        data = (reference / path).read_bytes()
        sample = data[:2**20]
        ratio = len(lzma.compress(sample, preset=1)) / max(len(sample), 1)
        total += int(len(data) * min(ratio, 1.0)) + 512
    return total


def build(reference: Path, part: str) -> Path:
    folder = PACK_ROOT / part
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / ARCHIVE
    partial = archive.with_suffix(".part")
    paths = part_files(reference, part)
    with tarfile.open(partial, "w:xz", preset=6) as tar:
        for path in paths:
            tar.add(reference / path, arcname=path, filter=_writable)
    partial.replace(archive)
    raw = sum((reference / p).stat().st_size for p in paths)
    print(f"{archive}: {len(paths)} files, {raw / 2**20:.1f} MiB -> {archive.stat().st_size / 2**20:.1f} MiB "
          f"(carry '{folder.relative_to(REPO)}'; limit {BUDGET_MIB} MiB)")
    missing = [net for net in LAYER_ARRAYS if part == "mini" and f"forward/{net}/dog/layers.npz" not in paths]
    if missing:
        print(f"  per-layer arrays left out (over the budget; layers_stats.json compared instead): {missing}")
    if archive.stat().st_size > BUDGET_MIB * 2**20:
        raise SystemExit(f"{archive} is over the {BUDGET_MIB} MiB budget")
    return archive


def unpacked(folder: Path) -> Path:
    """Where `unpack` puts the files of `folder` (.gpu_pack/mini -> .gpu_pack/mini.unpacked)."""
    return folder.parent / f"{folder.name}.unpacked"


def _writable(member: tarfile.TarInfo) -> tarfile.TarInfo:
    member.mode |= 0o200   # the pack is read-only; an unpacked copy may be unpacked over again
    return member


def unpack(folder: Path) -> Path:
    """Extract `folder`/reference.tar.xz, rebuild the inputs, check sha256s; returns the reference dir."""
    target = unpacked(folder)
    shutil.rmtree(target, ignore_errors=True)
    with tarfile.open(folder / ARCHIVE, "r:xz") as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(target, filter="data")
        else:   # Python < 3.12 without the backport: the archive is our own
            tar.extractall(target)
    files = manifest(target)
    written = list(_rebuild_inputs(target, files))
    bad = [path for path in _extracted(target) + written if path in files and _sha256(target / path) != files[path][1]]
    if bad:
        raise SystemExit(f"{target}: sha256 differs from MANIFEST.txt for {bad}")
    size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
    print(f"{target}: {len(_extracted(target))} files ({size / 2**20:.1f} MiB), {len(written)} inputs rebuilt; "
          f"every sha256 matches MANIFEST.txt")
    return target


def _rebuild_inputs(reference: Path, files: dict[str, tuple[int, str]]):
    """Yield the paths written: the letterboxed inputs (and training stacks) MANIFEST lists."""
    def letterboxed(image: str, size: int) -> np.ndarray:
        decoded = np.load(reference / "inputs" / f"{image}_decoded_uint8_hwc.npy")
        return letterbox_image(image_to_chw(decoded), size, size)

    for image, sizes in INPUT_SIZES.items():
        for size in sizes:
            path = f"inputs/{image}_{size}x{size}.npy"
            np.save(reference / path, letterboxed(image, size))
            yield path
    for case, (images, size) in TRAIN_INPUTS.items():
        path = f"train/{case}/input.npy"
        if (reference / "train" / case).is_dir():
            np.save(reference / path, np.stack([letterboxed(image, size) for image in images]))
            yield path


def _extracted(reference: Path) -> list[str]:
    return [str(f.relative_to(reference)) for f in reference.rglob("*") if f.is_file()]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build_parser = commands.add_parser("build", help="write .gpu_pack/<part>/reference.tar.xz from the pack")
    build_parser.add_argument("--reference", type=Path,
                              default=Path(os.environ.get("PYDARKNET_REFERENCE", REPO.parent / "shared" / "reference")))
    build_parser.add_argument("--parts", nargs="+", choices=("mini", "full"), default=["mini", "full"])
    unpack_parser = commands.add_parser("unpack", help="extract a part and rebuild its inputs")
    unpack_parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    if args.command == "build":
        for part in args.parts:
            build(args.reference, part)
    else:
        unpack(args.folder)


if __name__ == "__main__":
    main()
