"""Detection evaluation: hand-worked cases, a pycocotools cross-check and input errors.

Every expected AP below is worked out in the comment above it from the precision-recall points
(recall, precision) that the detections produce when taken by falling score.
"""
import math

import numpy as np
import pytest

from pydarknet.evaluate import (
    IGNORED, TRUE_POSITIVE, FALSE_POSITIVE, Detections, GroundTruth, average_precision,
    coco_ap, evaluate_detections, format_map_report, match_detections,
    precision_recall_curve,
)

BOX = [0.0, 0.0, 10.0, 10.0]
FAR = [50.0, 50.0, 60.0, 60.0]  # overlaps nothing near the origin


def truth(*rows, difficult=None) -> GroundTruth:
    return GroundTruth.from_rows(np.array(rows, dtype=float).reshape(-1, 5), difficult)


def dets(*records) -> Detections:
    return Detections.from_records(records)


def one_class_ap(detections: Detections, truths: list[GroundTruth], points: int = 0) -> float:
    return float(evaluate_detections(detections, truths, 1, points=points).ap[0])


# ---------------------------------------------------------------- average_precision


def test_average_precision_all_point_11_point_and_101_point_differ_as_computed():
    # Two objects; detections TP(.9), FP(.8), TP(.7) give points (.5, 1), (.5, .5), (1, 2/3).
    # Interpolated precision: 1 up to recall .5, then 2/3 up to 1.
    # all-point: .5 * 1 + .5 * 2/3 = 5/6
    # 11-point: recalls 0..0.5 (6 of them) get 1, 0.6..1 (5) get 2/3 -> (6 + 10/3) / 11 = 28/33
    # 101-point: recalls 0..0.50 (51) get 1, 0.51..1 (50) get 2/3 -> (51 + 100/3) / 101 = 253/303
    recall, precision = np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])
    assert average_precision(recall, precision, 0) == pytest.approx(5 / 6)
    assert average_precision(recall, precision, 11) == pytest.approx(28 / 33)
    assert average_precision(recall, precision, 101) == pytest.approx(253 / 303)


def test_average_precision_of_empty_curve_is_zero():
    for points in (0, 11, 101):
        assert average_precision(np.zeros(0), np.zeros(0), points) == 0.0


def test_average_precision_recall_threshold_is_exact_fraction():
    # DIVERGES test: recall 3/10 reaches the 11-point threshold 0.3, so thresholds 0, .1, .2, .3
    # get precision 1 -> 4/11; thresholds built as 3 * 0.1 = 0.30000000000000004 would give 3/11.
    assert average_precision(np.array([3 / 10]), np.array([1.0]), 11) == pytest.approx(4 / 11)


@pytest.mark.parametrize("points", [1, -1])
def test_average_precision_rejects_bad_points(points):
    with pytest.raises(ValueError, match="points"):
        average_precision(np.array([1.0]), np.array([1.0]), points)


def test_average_precision_rejects_bad_curves():
    with pytest.raises(ValueError, match="non-decreasing"):
        average_precision(np.array([0.5, 0.2]), np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="equal length"):
        average_precision(np.array([0.5, 1.0]), np.array([1.0]))


def test_precision_recall_curve_merges_tied_scores_into_one_point():
    # scores .9, .5, .5, .2 with TP, FP, TP, FP and 4 positives:
    # after .9: tp 1 of 1; after both .5: tp 2 of 3; after .2: tp 2 of 4
    recall, precision = precision_recall_curve(np.array([0.5, 0.9, 0.2, 0.5]),
                                               np.array([False, True, False, True]), 4)
    np.testing.assert_allclose(recall, [1 / 4, 2 / 4, 2 / 4])
    np.testing.assert_allclose(precision, [1.0, 2 / 3, 2 / 4])


# ---------------------------------------------------------------- evaluate_detections, one class


def test_perfect_detections_score_one_everywhere():
    truths = [truth([0, *BOX]), truth([0, 20, 20, 40, 30])]
    detections = dets((0, 0, 0.9, *BOX), (1, 0, 0.8, 20, 20, 40, 30))
    for points in (0, 11, 101):
        result = evaluate_detections(detections, truths, 1, points=points)
        assert result.ap[0] == pytest.approx(1.0)
    assert (result.tp.sum(), result.fp.sum(), result.fn.sum()) == (2, 0, 0)
    assert (result.precision, result.recall, result.f1, result.average_iou) == (1.0, 1.0, 1.0, 1.0)


def test_false_positive_ranked_above_true_positives():
    # FP(.9), TP(.8), TP(.7) on 2 objects: points (0, 0), (.5, .5), (1, 2/3).
    # Interpolated precision is 2/3 at every recall, so all-point and 11-point AP are 2/3.
    truths = [truth([0, *BOX]), truth([0, *BOX])]
    detections = dets((0, 0, 0.9, *FAR), (0, 0, 0.8, *BOX), (1, 0, 0.7, *BOX))
    assert one_class_ap(detections, truths, 0) == pytest.approx(2 / 3)
    assert one_class_ap(detections, truths, 11) == pytest.approx(2 / 3)


def test_tied_scores_do_not_depend_on_input_order():
    # TP and FP share score .8, a TP follows at .6; 2 objects.
    # One point after the tie: (.5, 1/2); then (1, 2/3). Interpolated precision 2/3 throughout:
    # AP = 2/3 in either input order. VOC's per-detection points would give 5/6 with the TP
    # listed first and 2/3 with the FP first.
    truths = [truth([0, *BOX]), truth([0, *BOX])]
    tp_first = dets((0, 0, 0.8, *BOX), (1, 0, 0.8, *FAR), (1, 0, 0.6, *BOX))
    fp_first = dets((1, 0, 0.8, *FAR), (0, 0, 0.8, *BOX), (1, 0, 0.6, *BOX))
    assert one_class_ap(tp_first, truths) == pytest.approx(2 / 3)
    assert one_class_ap(fp_first, truths) == pytest.approx(2 / 3)


def test_duplicate_detection_is_false_positive():
    # Both detections overlap the single object (IoU 1 and 0.8); the lower-scored one is a
    # duplicate. Points (1, 1), (1, 1/2) -> AP 1; at conf .25: TP 1, FP 1, P 1/2, R 1, F1 2/3.
    truths = [truth([0, *BOX])]
    detections = dets((0, 0, 0.7, 0, 0, 10, 8), (0, 0, 0.9, *BOX))
    outcome, iou = match_detections(detections, truths)
    np.testing.assert_array_equal(outcome, [FALSE_POSITIVE, TRUE_POSITIVE])
    np.testing.assert_allclose(iou, [0.0, 1.0])
    result = evaluate_detections(detections, truths, 1)
    assert result.ap[0] == pytest.approx(1.0)
    assert (result.tp[0], result.fp[0], result.fn[0]) == (1, 1, 0)
    assert (result.precision, result.recall) == (0.5, 1.0)
    assert result.f1 == pytest.approx(2 / 3)


def test_second_detection_falls_back_to_next_free_object():
    # Objects G1 = [0,0,10,10] and G2 = [0,0,10,8]. D1 = G1 (score .9) takes G1.
    # D2 = [0,0,10,9]: IoU 90/100 with the taken G1, 80/90 with G2 -> TP on G2.
    # Average IoU of the TPs: (1 + 8/9) / 2 = 17/18.
    truths = [truth([0, *BOX], [0, 0, 0, 10, 8])]
    detections = dets((0, 0, 0.9, *BOX), (0, 0, 0.8, 0, 0, 10, 9))
    outcome, iou = match_detections(detections, truths)
    np.testing.assert_array_equal(outcome, [TRUE_POSITIVE, TRUE_POSITIVE])
    np.testing.assert_allclose(iou, [1.0, 8 / 9])
    assert evaluate_detections(detections, truths, 1).average_iou == pytest.approx(17 / 18)


def test_iou_threshold_is_inclusive_and_iou_has_no_plus_one():
    # [0,0,10,5] against [0,0,10,10] has IoU exactly 50/100; the VOC devkit's +1 would make it
    # 66/121 = .545 and still match at .51
    truths = [truth([0, *BOX])]
    detections = dets((0, 0, 0.9, 0, 0, 10, 5))
    assert evaluate_detections(detections, truths, 1, iou_thresh=0.5).tp[0] == 1
    assert evaluate_detections(detections, truths, 1, iou_thresh=0.51).fp[0] == 1


def test_zero_area_boxes_do_not_match():
    # identical degenerate boxes have union 0: no overlap, never a match
    outcome, iou = match_detections(dets((0, 0, 0.9, 5, 5, 5, 5)), [truth([0, 5, 5, 5, 5])])
    assert outcome[0] == FALSE_POSITIVE and iou[0] == 0.0


def test_difficult_object_is_neither_positive_nor_penalised():
    # Easy object at BOX, difficult one at FAR. Two detections on the difficult object (.9, .7)
    # are both ignored (it is never used up); the easy one is found at .8.
    # One positive, one TP -> AP 1. Counting the ignored ones as FPs would give AP 1/2.
    truths = [truth([0, *BOX], [0, *FAR], difficult=[False, True])]
    detections = dets((0, 0, 0.9, *FAR), (0, 0, 0.8, *BOX), (0, 0, 0.7, *FAR))
    outcome, _ = match_detections(detections, truths)
    np.testing.assert_array_equal(outcome, [IGNORED, TRUE_POSITIVE, IGNORED])
    result = evaluate_detections(detections, truths, 1)
    assert result.num_positives[0] == 1
    assert result.ap[0] == pytest.approx(1.0)
    assert (result.tp[0], result.fp[0], result.fn[0]) == (1, 0, 0)


def test_conf_thresh_selects_the_operating_point_only():
    # TPs at .9 and .2 on two objects: AP uses both (1), conf .25 keeps only the first.
    truths = [truth([0, *BOX]), truth([0, *BOX])]
    detections = dets((0, 0, 0.9, *BOX), (1, 0, 0.2, *BOX))
    result = evaluate_detections(detections, truths, 1, conf_thresh=0.25)
    assert result.ap[0] == pytest.approx(1.0)
    assert (result.tp[0], result.fn[0], result.recall) == (1, 1, 0.5)


def test_no_detections_gives_zero_ap():
    result = evaluate_detections(Detections.from_records([]), [truth([0, *BOX])], 1)
    assert result.ap[0] == 0.0 and result.mean_ap == 0.0 and result.fn[0] == 1


# ---------------------------------------------------------------- several classes and the report


def three_class_case() -> tuple[Detections, list[GroundTruth]]:
    """cat: found (IoU 1) plus a FP at .1 -> AP 1. dog: one of two found (IoU .8) -> AP .5.
    bird: no object, one FP at .6 -> AP NaN, left out of mAP = (1 + .5) / 2 = .75."""
    truths = [truth([0, *BOX], [1, 20, 20, 30, 30]), truth([1, *BOX])]
    detections = dets((0, 0, 0.9, *BOX), (0, 1, 0.8, 20, 20, 30, 28),
                      (1, 2, 0.6, *BOX), (1, 0, 0.1, *FAR))
    return detections, truths


def test_class_without_ground_truth_is_left_out_of_map():
    detections, truths = three_class_case()
    result = evaluate_detections(detections, truths, 3)
    np.testing.assert_allclose(result.ap[:2], [1.0, 0.5])
    assert math.isnan(result.ap[2])
    assert result.mean_ap == pytest.approx(0.75)
    np.testing.assert_array_equal(result.num_positives, [1, 2, 0])
    np.testing.assert_array_equal(result.tp, [1, 1, 0])
    np.testing.assert_array_equal(result.fp, [0, 0, 1])  # the cat FP at .1 is below conf .25


def test_class_with_only_difficult_objects_is_left_out_of_map():
    truths = [truth([0, *BOX], [1, *FAR], difficult=[False, True])]
    detections = dets((0, 0, 0.9, *BOX))
    result = evaluate_detections(detections, truths, 2)
    assert math.isnan(result.ap[1]) and result.mean_ap == pytest.approx(1.0)


def test_format_map_report_matches_alexeyab_layout():
    # TP 2, FP 1 (bird), FN 1 (second dog): precision = recall = F1 = 2/3; IoU (1 + .8) / 2
    detections, truths = three_class_case()
    lines = format_map_report(evaluate_detections(detections, truths, 3), ["cat", "dog", "bird"])
    assert lines == [
        "detections_count = 4, unique_truth_count = 3",
        "class_id = 0, name = cat, ap = 100.00%   \t (TP = 1, FP = 0)",
        "class_id = 1, name = dog, ap = 50.00%   \t (TP = 1, FP = 0)",
        "class_id = 2, name = bird, ap = nan%   \t (TP = 0, FP = 1)",
        "for conf_thresh = 0.25, precision = 0.67, recall = 0.67, F1-score = 0.67",
        "for conf_thresh = 0.25, TP = 2, FP = 1, FN = 1, average IoU = 90.00 %",
        "IoU threshold = 50 %, used Area-Under-Curve for each unique Recall",
        "mean average precision (mAP@0.50) = 0.750000, or 75.00 %",
    ]


def test_format_map_report_names_the_interpolation():
    detections, truths = three_class_case()
    lines = format_map_report(evaluate_detections(detections, truths, 3, points=11), "abc")
    # dog: recall .5 with precision 1 -> thresholds 0..0.5 -> 6/11; mAP (1 + 6/11) / 2 = 17/22
    assert lines[-2] == "IoU threshold = 50 %, used 11 Recall-points"
    assert lines[-1] == f"mean average precision (mAP@0.50) = {17 / 22:.6f}, or {1700 / 22:.2f} %"


def test_format_map_report_rejects_wrong_name_count():
    detections, truths = three_class_case()
    with pytest.raises(ValueError, match="2 names for 3 classes"):
        format_map_report(evaluate_detections(detections, truths, 3), ["cat", "dog"])


# ---------------------------------------------------------------- pycocotools


def synthetic_set(seed: int = 0, num_images: int = 200, num_classes: int = 5
                  ) -> tuple[Detections, list[GroundTruth], np.ndarray]:
    """Random objects in 640x480 images; per object a jittered hit (80 %), a duplicate (20 %),
    a wrong-class hit (10 %); plus background false positives. Scores are continuous (no ties)."""
    rng = np.random.default_rng(seed)
    size = np.array([640.0, 480.0])
    truths, records = [], []
    for image in range(num_images):
        n = rng.integers(0, 7)
        centre = rng.uniform(0, 1, (n, 2)) * size
        half = rng.uniform(10, 100, (n, 2))
        boxes = np.clip(np.concatenate([centre - half, centre + half], 1), 0, np.tile(size, 2))
        classes = rng.integers(0, num_classes, n)
        truths.append(GroundTruth(classes, boxes))
        for c, box in zip(classes, boxes):
            wh = box[2:] - box[:2]
            for copies, cls, low in ((rng.random() < 0.8, c, 0.3), (rng.random() < 0.2, c, 0.0),
                                     (rng.random() < 0.1, (c + 1) % num_classes, 0.0)):
                if copies:
                    jitter = rng.normal(0, 0.07, 4) * np.tile(wh, 2)
                    jittered = np.sort((box + jitter).reshape(2, 2), axis=0).ravel()
                    records.append((image, cls, rng.uniform(low, 1), *jittered))
        for _ in range(rng.poisson(1.5)):
            corner = rng.uniform(0, 1, 2) * size
            records.append((image, rng.integers(0, num_classes), rng.uniform(0, 0.6),
                            *corner, *(corner + rng.uniform(10, 150, 2))))
    return Detections.from_records(records), truths, np.tile(size, (num_images, 1))


@pytest.fixture(scope="module")
def synthetic():
    detections, truths, sizes = synthetic_set()
    return detections, truths, sizes, coco_ap(detections, truths, 5, sizes)


def test_synthetic_set_is_not_trivial(synthetic):
    detections, truths, _, coco = synthetic
    result = evaluate_detections(detections, truths, 5)
    assert len(detections) > 800 and (result.num_positives > 80).all()
    assert 0.4 < coco.ap50 < 0.95 and coco.ap < coco.ap75 < coco.ap50


def test_map_agrees_with_pycocotools_ap50(synthetic):
    # Same matching and interpolation as pycocotools, so 101 points agree to rounding; the exact
    # area differs from 101 samples by less than one recall step per class.
    detections, truths, _, coco = synthetic
    all_point = evaluate_detections(detections, truths, 5, points=0).mean_ap
    coco_point = evaluate_detections(detections, truths, 5, points=101).mean_ap
    assert coco_point == pytest.approx(coco.ap50, abs=1e-9)
    assert all_point == pytest.approx(coco.ap50, abs=0.005)
    assert all_point != pytest.approx(coco_point, abs=1e-6)


def test_map_agrees_with_pycocotools_ap75_and_ap(synthetic):
    # COCO's AP is the 101-point mAP averaged over IoU thresholds .50:.05:.95
    detections, truths, _, coco = synthetic
    maps = [evaluate_detections(detections, truths, 5, iou_thresh=t, points=101).mean_ap
            for t in np.linspace(0.5, 0.95, 10)]
    assert maps[5] == pytest.approx(coco.ap75, abs=1e-9)
    assert np.mean(maps) == pytest.approx(coco.ap, abs=1e-9)


def test_coco_ap_treats_difficult_as_crowd():
    # Found easy object and unfound difficult one: 1 as a crowd region, about 0.5 if it counted.
    truths = [truth([0, *BOX], [0, *FAR], difficult=[False, True])]
    coco = coco_ap(dets((0, 0, 0.9, *BOX)), truths, 1, np.array([[100.0, 100.0]]))
    assert (coco.ap, coco.ap50, coco.ap75) == pytest.approx((1.0, 1.0, 1.0))


def test_coco_ap_without_detections():
    sizes = np.array([[100.0, 100.0]])
    assert coco_ap(Detections.from_records([]), [truth([0, *BOX])], 1, sizes).ap50 == 0.0


def test_coco_ap_is_silent(capsys):
    coco_ap(dets((0, 0, 0.9, *BOX)), [truth([0, *BOX])], 1, np.array([[100.0, 100.0]]))
    assert capsys.readouterr().out == ""


# ---------------------------------------------------------------- bad input


def test_mismatched_shapes_raise():
    with pytest.raises(ValueError, match=r"boxes_xyxy must have shape \(3, 4\)"):
        GroundTruth(np.array([0, 1, 2]), np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"difficult must have shape \(1,\)"):
        GroundTruth(np.array([0]), np.zeros((1, 4)), difficult=np.array([True, False]))
    with pytest.raises(ValueError, match=r"scores must have shape \(2,\)"):
        Detections(np.array([0, 0]), np.array([0, 0]), np.array([0.5]), np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"shape \(N, 7\)"):
        Detections.from_records([(0, 0, 0.5, 1, 2, 3)])
    with pytest.raises(ValueError, match="image_sizes"):
        coco_ap(dets((0, 0, 0.9, *BOX)), [truth([0, *BOX])], 1, np.array([100.0, 100.0]))


def test_negative_or_fractional_class_ids_raise():
    with pytest.raises(ValueError, match="classes must be >= 0, got -1"):
        truth([-1, *BOX])
    with pytest.raises(ValueError, match="classes must be >= 0"):
        dets((0, -2, 0.5, *BOX))
    with pytest.raises(ValueError, match="must hold integers"):
        truth([0.5, *BOX])


def test_num_classes_too_small_raises():
    with pytest.raises(ValueError, match="class id 2 out of range for num_classes=2"):
        evaluate_detections(dets((0, 0, 0.9, *BOX)), [truth([2, *BOX])], 2)
    with pytest.raises(ValueError, match="class id 3 out of range for num_classes=3"):
        evaluate_detections(dets((0, 3, 0.9, *BOX)), [truth([0, *BOX])], 3)
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        evaluate_detections(dets((0, 0, 0.9, *BOX)), [truth([0, *BOX])], 0)


def test_other_bad_input_raises():
    with pytest.raises(ValueError, match="image id 1 but only 1 ground-truth images"):
        evaluate_detections(dets((1, 0, 0.9, *BOX)), [truth([0, *BOX])], 1)
    with pytest.raises(ValueError, match="x1 <= x2"):
        truth([0, 10, 0, 0, 10])
    with pytest.raises(ValueError, match="finite"):
        dets((0, 0, float("nan"), *BOX))
    with pytest.raises(ValueError, match="iou_thresh"):
        evaluate_detections(dets((0, 0, 0.9, *BOX)), [truth([0, *BOX])], 1, iou_thresh=0)
    with pytest.raises(ValueError, match="points"):
        evaluate_detections(dets((0, 0, 0.9, *BOX)), [truth([0, *BOX])], 1, points=1)
