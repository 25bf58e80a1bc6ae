"""The escapes of issue 20's fuzz and fault campaign, rebuilt from their descriptions: each ends in one
`Error:` line and exit code 1 (the user's mistake), or is skipped and counted (a bad image in a list);
the converters never write outside their output (and the dataset's label) folders."""
from __future__ import annotations

import os
import resource
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

import bad_images
from pydarknet.cli import main
from pydarknet.errors import DataError, MissingFileError
from pydarknet.image import load_image, network_input
from pydarknet.imdecode import MAX_PIXELS_ENV, header_size
from pydarknet.network import Darknet
from pydarknet.weights import save_weights
from tiny_detector import write_image, write_tiny_cfg
from voc_devkit import annotation_xml, make_devkit

DECODERS = ("stb", "opencv")


def error_line(result) -> str:
    """The one `Error:` line of a failed command (exit code 1, no traceback)."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "Usage:" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """A 2-class 64x64 region detector with random weights, its .names and .data, and a good image."""
    root = tmp_path_factory.mktemp("tiny")
    cfg = write_tiny_cfg(root / "tiny.cfg", classes=2)
    net = Darknet.from_cfg(cfg, seed=0)
    save_weights(net, root / "tiny.weights")
    (root / "tiny.names").write_text("cat\ndog\n")
    image = root / "images" / "good.jpg"
    write_image(image, 40, 30, seed=1)
    (root / "valid.txt").write_text(f"{image}\n")
    data = root / "tiny.data"
    data.write_text(f"classes=2\nnames={root / 'tiny.names'}\nvalid={root / 'valid.txt'}\n"
                    f"results={root / 'results'}\n")
    return {"root": root, "cfg": cfg, "weights": root / "tiny.weights", "data": data, "image": image,
            "names": root / "tiny.names"}


def detector_test(tiny, image, *extra, data=None, cfg=None, weights=None):
    return CliRunner().invoke(main, ["-q", "detector", "test", str(data or tiny["data"]), str(cfg or tiny["cfg"]),
                                     str(weights or tiny["weights"]), str(image), "-out",
                                     str(tiny["root"] / "predictions"), *extra])


def decoder_args(decoder: str) -> list[str]:
    return ["--decoder", decoder]


# E1-E6: images ---------------------------------------------------------------------------------------------

IMAGE_ESCAPES = {
    "E1 zero-byte file": (lambda: b"", "empty file"),
    "E2 74-byte PNG claiming 100000x100000": (lambda: bad_images.png_claiming(100000, 100000), "above the limit"),
    "E3 30000² PNG bomb": (lambda: bad_images.png_bomb(30000), "30000x30000 is 900000000 pixels"),
    "E3 20000² JPEG": (lambda: bad_images.jpeg_claiming(20000, 20000), "20000x20000 is 400000000 pixels"),
    "E5 PNG with a broken chunk": (bad_images.png_broken_chunk, "not a readable image"),
    "E6 20000² RLE TGA": (lambda: bad_images.tga_claiming(20000, 20000), "not a readable image"),
}


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("escape", sorted(IMAGE_ESCAPES))
def test_a_bad_image_is_one_error_line(tiny, tmp_path, escape, decoder):
    make, reason = IMAGE_ESCAPES[escape]
    image = tmp_path / "bad.png"
    image.write_bytes(make())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    line = error_line(detector_test(tiny, image, *decoder_args(decoder)))
    assert line.startswith(f"Error: Cannot load image '{image}': ") and reason in line, line
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024   # ru_maxrss: KiB on Linux
    assert grown < 200 * 2 ** 20, f"decoding the refused image took {grown / 2 ** 20:.0f} MiB"


@pytest.mark.parametrize("decoder", DECODERS)
def test_the_pixel_limit_is_read_from_the_header_and_can_be_set(tmp_path, monkeypatch, decoder):
    image = tmp_path / "big.png"
    image.write_bytes(bad_images.encoded(".png", 300, 200))
    assert load_image(image, decoder).shape == (200, 300, 3)
    with pytest.raises(DataError, match=r"300x200 is 60000 pixels, above the limit of 59999"):
        load_image(image, decoder, max_pixels=59_999)
    monkeypatch.setenv(MAX_PIXELS_ENV, "1000")
    with pytest.raises(DataError, match=r"above the limit of 1000 \(\$PYDARKNET_MAX_IMAGE_PIXELS"):
        load_image(image, decoder)


@pytest.mark.parametrize("claim, size", [
    (lambda: bad_images.png_claiming(7, 9), (7, 9)),
    (lambda: bad_images.jpeg_claiming(70, 90), (70, 90)),
    (lambda: bad_images.bmp_claiming(70, -90), (70, 90)),
    (lambda: bad_images.gif_claiming(70, 90), (70, 90)),
    (lambda: bad_images.gif_claiming(70, 90, frame=True), (70, 90)),
    (lambda: bad_images.tga_claiming(70, 90), (70, 90)),
    (lambda: b"P6\n# a comment\n70 90\n255\n", (70, 90)),
], ids=["png", "jpeg", "bmp", "gif", "gif frame", "tga", "pnm"])
def test_header_sizes(claim, size):
    assert header_size(claim()) == size


def test_e4_an_image_too_thin_to_letterbox_is_refused_naming_it(tiny, tmp_path):
    # DIVERGES (image.letterbox_image): Darknet's 416 * 1 / 417 = 0 gives a blank canvas and inf boxes
    image = tmp_path / "thin.png"
    image.write_bytes(bad_images.encoded(".png", 1, 417))
    line = error_line(detector_test(tiny, image))
    assert f"Error: {image}: cannot letterbox a 1x417 image into 64x64" in line
    assert network_input(load_image(image), 64, 64, letterbox=False).shape == (3, 64, 64)   # stretched: fine


# E8-E10: what is not a regular file, and text files without a bound --------------------------------------

def _fifo(tmp_path: Path) -> Path:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    return fifo


def invoke_unblocking(args: list[str], fifo: Path | None):
    """CliRunner.invoke, with a writer opened on `fifo` after 20 s so that a reader stuck in open() ends."""
    done = threading.Event()

    def unblock():
        if not done.wait(20) and fifo is not None:
            with open(fifo, "wb"):
                pass

    thread = threading.Thread(target=unblock, daemon=True)
    thread.start()
    try:
        return CliRunner().invoke(main, args)
    finally:
        done.set()


NOT_FILES = {"missing": "no such", "directory": "is a directory", "FIFO": "is a FIFO", "device": "is a device"}


def _not_a_file(kind: str, tmp_path: Path) -> Path:
    if kind == "missing":
        return tmp_path / "absent"
    if kind == "directory":
        (tmp_path / "folder").mkdir()
        return tmp_path / "folder"
    if kind == "FIFO":
        return _fifo(tmp_path)
    return Path(os.devnull)   # a character device; only stat'ed


@pytest.mark.parametrize("kind", sorted(NOT_FILES))
@pytest.mark.parametrize("argument", ["data", "cfg", "weights"])
def test_e9_e10_data_cfg_weights_that_are_not_files_are_one_error_line(tiny, tmp_path, argument, kind):
    path = _not_a_file(kind, tmp_path)
    given = {"data": tiny["data"], "cfg": tiny["cfg"], "weights": tiny["weights"], argument: path}
    result = invoke_unblocking(["detector", "test", str(given["data"]), str(given["cfg"]), str(given["weights"]),
                                str(tiny["image"])], path if kind == "FIFO" else None)
    line = error_line(result)
    assert line.startswith(f"Error: {path}: ") and NOT_FILES[kind] in line, line
    if kind != "missing":
        assert f"{argument} file" in line


@pytest.mark.parametrize("kind", ["directory", "FIFO", "device"])
def test_e10_an_image_path_that_is_not_a_file_says_what_it_is(tiny, tmp_path, kind):
    path = _not_a_file(kind, tmp_path)
    line = error_line(invoke_unblocking(["-q", "detector", "test", str(tiny["data"]), str(tiny["cfg"]),
                                         str(tiny["weights"]), str(path)], path if kind == "FIFO" else None))
    assert line == f"Error: Cannot load image '{path}': image file is a {kind}, not a regular file"


def test_e9_a_fifo_weights_file_is_refused_by_the_api_before_open(tiny, tmp_path):
    from pydarknet.weights import load_weights

    fifo = _fifo(tmp_path)
    with pytest.raises(DataError, match="weights file is a FIFO"):
        load_weights(Darknet.from_cfg(tiny["cfg"]), fifo)


@pytest.mark.parametrize("names", [Path("/dev/zero"), "fifo", "folder"], ids=["/dev/zero", "fifo", "folder"])
def test_e8_a_names_file_that_never_ends_is_refused(tiny, tmp_path, names):
    if names == "fifo":
        names = _fifo(tmp_path)
    elif names == "folder":
        names = tmp_path / "folder"
        names.mkdir()
    data = tmp_path / "zero.data"
    data.write_text(f"classes=2\nnames={names}\n")
    line = error_line(invoke_unblocking(["-q", "detector", "test", str(data), str(tiny["cfg"]), str(tiny["weights"]),
                                         str(tiny["image"])], names if "fifo" in str(names) else None))
    assert line.startswith(f"Error: {names}: names file is a ")


def test_a_text_file_above_the_cap_is_refused(tmp_path, monkeypatch):
    from pydarknet.data import files

    listed = tmp_path / "train.txt"
    listed.write_text("a.jpg\n" * 100)
    monkeypatch.setattr(files, "TEXT_FILE_MAX_BYTES", 99)
    with pytest.raises(DataError, match=r"list file of 600 bytes is larger than the 99 bytes"):
        files.read_list(listed)


def test_a_label_file_that_is_a_fifo_is_refused(tmp_path):
    from pydarknet.data.labels import read_labels

    with pytest.raises(DataError, match="label file is a FIFO"):
        read_labels(_fifo(tmp_path), 2)
    with pytest.raises(MissingFileError, match="no such label file"):
        read_labels(tmp_path / "absent.txt", 2)


# The two messages: backup= a file, class names that are paths ---------------------------------------------

def test_a_backup_that_is_a_file_names_the_data_line(tiny, tmp_path):
    victim = tmp_path / "hostname"
    victim.write_text("machine\n")
    data = tmp_path / "train.data"
    data.write_text(f"classes=2\ntrain={tiny['root'] / 'valid.txt'}\nnames={tiny['names']}\nbackup={victim}\n")
    line = error_line(CliRunner().invoke(main, ["-q", "detector", "train", str(data), str(tiny["cfg"])]))
    # the training engine checks it before the net is built (engine/train.py:backup_folder)
    assert line == f"Error: {data}:4: backup={victim}: {victim} is a file, not a folder"
    assert victim.read_text() == "machine\n"


def test_class_names_from_a_passwd_file_cannot_name_result_files(tiny, tmp_path):
    names = tmp_path / "passwd"
    names.write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n")
    results = tmp_path / "results"
    data = tmp_path / "valid.data"
    data.write_text(f"classes=2\nnames={names}\nvalid={tiny['root'] / 'valid.txt'}\nresults={results}\n")
    line = error_line(CliRunner().invoke(main, ["-q", "detector", "valid", str(data), str(tiny["cfg"]),
                                                str(tiny["weights"])]))
    assert line.startswith(f"Error: {names}:1: class name 'root:x:0:0:root:/root:/bin/bash' contains '/'")
    assert not results.exists() or not any(results.rglob("*"))


# valid / map / recall: an unreadable image is skipped and counted -----------------------------------------

@pytest.fixture()
def list_with_a_bad_image(tiny, tmp_path) -> tuple[Path, list[Path]]:
    """A .data file whose valid list has a good image, an empty file, a 1x417 image and a good one, labelled."""
    images = tmp_path / "images"
    good1, empty, thin, good2 = images / "a.jpg", images / "b.jpg", images / "c.png", images / "d.jpg"
    write_image(good1, 40, 30, seed=2)
    empty.write_bytes(b"")
    thin.write_bytes(bad_images.encoded(".png", 1, 417))
    write_image(good2, 30, 40, seed=3)
    (tmp_path / "labels").mkdir()
    for image in (good1, empty, thin, good2):
        (tmp_path / "labels" / f"{image.stem}.txt").write_text("0 0.5 0.5 0.4 0.4\n1 0.3 0.3 0.2 0.2\n")
    listed = tmp_path / "valid.txt"
    listed.write_text("".join(f"{image}\n" for image in (good1, empty, thin, good2)))
    data = tmp_path / "list.data"
    data.write_text(f"classes=2\nnames={tiny['names']}\nvalid={listed}\nresults={tmp_path / 'results'}\n")
    return data, [good1, empty, thin, good2]


def test_valid_skips_and_counts_an_unreadable_image(tiny, list_with_a_bad_image):
    data, (good1, empty, thin, good2) = list_with_a_bad_image
    result = CliRunner().invoke(main, ["detector", "valid", str(data), str(tiny["cfg"]), str(tiny["weights"])])
    assert result.exit_code == 0, result.output
    assert f"Cannot load image '{empty}': empty file (0 bytes); skipped" in result.output
    assert f"{thin}: cannot letterbox a 1x417 image" in result.output
    assert "Warning: 2 of 4 images could not be read and were skipped" in result.output
    written = "".join(path.read_text() for path in (data.parent / "results").glob("*.txt"))
    named = {line.split()[0] for line in written.splitlines()}
    assert named <= {good1.stem, good2.stem} and named   # result lines name the images that were read


def test_map_and_recall_skip_an_unreadable_image_keeping_the_others_aligned(tiny, list_with_a_bad_image):
    from pydarknet.evaluate import collect_map_inputs
    from pydarknet.network import load_network

    data, (good1, empty, thin, good2) = list_with_a_bad_image
    net = load_network(tiny["cfg"], tiny["weights"], "cpu")
    inputs = collect_map_inputs(net, [str(p) for p in (good1, empty, thin, good2)], workers=2, batch=1)
    assert inputs.paths == [str(good1), str(good2)] and inputs.unreadable == [str(empty), str(thin)]
    assert [tuple(size) for size in inputs.image_sizes] == [(40, 30), (30, 40)]
    assert set(inputs.detections.image_ids.tolist()) <= {0, 1}   # index the two ground truths read
    # recall stretches the image (no letterbox): the 1x417 image is usable there
    for command, skipped in (("map", 2), ("recall", 1)):
        result = CliRunner().invoke(main, ["detector", command, str(data), str(tiny["cfg"]), str(tiny["weights"])])
        assert result.exit_code == 0, (command, result.output)
        assert f"Warning: {skipped} of 4 images could not be read and were skipped" in result.output, command


# E12, E13: the converters ---------------------------------------------------------------------------------

def snapshot(root: Path, *kept_out: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under `root` but those under `kept_out`: path -> (mode, bytes)."""
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not any(path.is_relative_to(folder) for folder in kept_out):
            files[str(path)] = (path.stat().st_mode, path.read_bytes())
    return files


def _coco(tmp_path: Path, images: list[dict], annotations: list[dict]) -> tuple[Path, Path]:
    import json

    folder = tmp_path / "coco" / "images" / "val2014"
    write_image(folder / "COCO_val2014_000000000001.jpg", 40, 30, seed=0)
    instances = tmp_path / "coco" / "annotations" / "instances_val2014.json"
    instances.parent.mkdir(parents=True)
    good = {"id": 1, "file_name": "COCO_val2014_000000000001.jpg", "width": 40, "height": 30}
    instances.write_text(json.dumps({"images": [good, *images], "annotations": annotations,
                                     "categories": [{"id": 1, "name": "person"}]}))
    return instances, folder


def test_e13_coco_file_names_cannot_write_outside(tmp_path):
    victim = tmp_path / "victim" / "passwd"
    victim.parent.mkdir()
    victim.write_text("root:x:0:0:root:/root:/bin/bash\n")
    # images/val2014/../../../../victim/passwd: its "labels" path is the victim itself (no image extension)
    hostile = [{"id": 2, "file_name": "../../../../victim/passwd", "width": 4, "height": 4},
               {"id": 3, "file_name": str(tmp_path / "victim" / "abs.jpg"), "width": 4, "height": 4},
               {"id": 4, "file_name": "../../../victim/climb.jpg", "width": 4, "height": 4},
               {"id": 5, "file_name": "no_extension", "width": 4, "height": 4}]
    annotations = [{"id": i, "image_id": i, "category_id": 1, "bbox": [0, 0, 2, 2]} for i in (1, 2, 3, 4, 5)]
    instances, images = _coco(tmp_path, hostile, annotations)
    out = tmp_path / "out"
    before = snapshot(tmp_path, out, tmp_path / "coco" / "labels")
    result = CliRunner().invoke(main, ["data", "coco", str(instances), str(images), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert snapshot(tmp_path, out, tmp_path / "coco" / "labels") == before
    assert victim.read_text() == "root:x:0:0:root:/root:/bin/bash\n"
    assert "Note: 4 image(s) of the json skipped: 3 with an absolute path or '..' in the name, " \
           "1 without an image extension" in result.output
    assert (out / "val2014.txt").read_text() == f"{images / 'COCO_val2014_000000000001.jpg'}\n"
    assert sorted(p.name for p in (tmp_path / "coco" / "labels").rglob("*")) == \
        ["COCO_val2014_000000000001.txt", "val2014"]


def test_e13_voc_image_set_ids_cannot_write_outside(tmp_path):
    devkit = make_devkit(tmp_path / "dataset")
    victim = tmp_path / "victim" / "note"
    victim.parent.mkdir()
    victim.write_text("keep me\n")
    sets = devkit / "VOC2007" / "ImageSets" / "Main" / "train.txt"
    sets.write_text(sets.read_text() + "../../../../victim/note\n/abs/id\n")
    # the annotation the traversal would read exists, so only the id check stops it
    (tmp_path / "victim" / "note.xml").write_text(annotation_xml("note", 10, 10, [("dog", "0", ("1", "1", "5", "5"), ())]))
    out = tmp_path / "out"
    before = snapshot(tmp_path, out, devkit / "VOC2007" / "labels", devkit / "VOC2012" / "labels")
    result = CliRunner().invoke(main, ["data", "voc", str(devkit), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert snapshot(tmp_path, out, devkit / "VOC2007" / "labels", devkit / "VOC2012" / "labels") == before
    assert not (tmp_path / "victim" / "note.txt").exists() and victim.read_text() == "keep me\n"
    assert "Note: 2 image set id(s) naming a path ('/', '..') skipped, first: '../../../../victim/note'" in result.output


def test_e12_voc_nan_and_inverted_boxes_are_skipped_and_counted(tmp_path):
    devkit = make_devkit(tmp_path)
    annotation = devkit / "VOC2007" / "Annotations" / "000001.xml"
    objects = [("dog", "0", ("nan", "1", "51", "26"), ()), ("dog", "0", ("60", "1", "20", "26"), ()),
               ("dog", "0", ("1", "1", "inf", "26"), ()), ("dog", "0", ("1", "1", "151", "26"), ()),
               ("dog", "0", ("1", "1", "51", "26"), ())]
    annotation.write_text(annotation_xml("000001", 100, 50, objects))
    result = CliRunner().invoke(main, ["data", "voc", str(devkit), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    labels = (devkit / "VOC2007" / "labels" / "000001.txt").read_text()
    assert "nan" not in labels and "inf" not in labels and " -" not in labels
    # the box reaching to x=151 of a 100-wide image is cut at 100; the good one is voc_label.py's bytes
    assert labels.splitlines() == ["11 0.495 0.25 0.99 0.5", "11 0.25 0.25 0.5 0.5"]
    assert "Note: 3 object(s) with a NaN, infinite or inverted box (or none inside the image) skipped" in result.output
    assert "Note: 1 box(es) reaching outside their image clipped to it" in result.output


def test_e12_coco_nan_boxes_are_skipped_and_counted(tmp_path):
    annotations = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [float("nan"), 0, 2, 2]},
                   {"id": 2, "image_id": 1, "category_id": 1, "bbox": [0, 0, float("inf"), 2]},
                   {"id": 3, "image_id": 1, "category_id": 1, "bbox": [30, 20, 20, 20]},
                   {"id": 4, "image_id": 1, "category_id": 1, "bbox": [50, 0, 2, 2]},
                   {"id": 5, "image_id": 1, "category_id": 1, "bbox": [4, 3, 8, 6]}]
    instances, images = _coco(tmp_path, [], annotations)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["data", "coco", str(instances), str(images), "--out", str(out)])
    assert result.exit_code == 0, result.output
    labels = (tmp_path / "coco" / "labels" / "val2014" / "COCO_val2014_000000000001.txt").read_text()
    assert "nan" not in labels and "inf" not in labels
    assert labels.splitlines() == ["0 0.875000 0.833333 0.250000 0.333333", "0 0.200000 0.200000 0.200000 0.200000"]
    assert "Note: 2 non-finite (NaN or infinite) annotation(s) skipped" in result.output
    assert "Note: 1 outside-the-image annotation(s) skipped" in result.output
    assert "Note: 1 box(es) reaching outside their image clipped to it" in result.output


def test_a_fifo_as_the_coco_json_is_one_error_line(tmp_path):
    fifo = _fifo(tmp_path)
    (tmp_path / "images").mkdir()
    line = error_line(invoke_unblocking(["data", "coco", str(fifo), str(tmp_path / "images"), "--out",
                                         str(tmp_path / "out")], fifo))
    assert line == f"Error: {fifo}: instances_json file is a FIFO, not a regular file"


@pytest.mark.parametrize("decoder", DECODERS)
def test_e1_e3_training_skips_an_empty_or_huge_image_as_a_bad_sample(tmp_path, decoder):
    from pydarknet.data.dataset import DetectionDataset, SkippedSample

    images = tmp_path / "images"
    images.mkdir()
    (images / "empty.jpg").write_bytes(b"")
    (images / "huge.jpg").write_bytes(bad_images.jpeg_claiming(20000, 20000))
    (tmp_path / "labels").mkdir()
    for name in ("empty", "huge"):
        (tmp_path / "labels" / f"{name}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    dataset = DetectionDataset([str(images / "empty.jpg"), str(images / "huge.jpg")], 2, (64, 64), decoder=decoder)
    empty, huge = dataset[0], dataset[1]
    assert isinstance(empty, SkippedSample) and "empty file" in empty.reason
    assert isinstance(huge, SkippedSample) and "20000x20000 is 400000000 pixels" in huge.reason


@pytest.mark.parametrize("kind", ["tree", "map"])
def test_tree_and_map_files_must_be_regular_files(tmp_path, kind):
    """A .tree or .map named by a cfg or .data file is read as any user's text file: a FIFO never blocks."""
    from pydarknet.tree import WordTree, read_map

    fifo = tmp_path / f"x.{kind}"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match=f"{kind} file is a FIFO, not a regular file"):
        WordTree.read(fifo) if kind == "tree" else read_map(fifo)
