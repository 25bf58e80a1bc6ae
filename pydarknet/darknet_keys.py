"""The cfg keys each Darknet reads, per section, and those of them that change a result at inference.

No torch here: data for `cfg.Section.check_unused`. Taken from the `option_find*` calls of each
`parse_<section>` (and of `parse_network_cfg`, which reads the keys of `EVERY_LAYER_*` after each layer) in
    pjreddie/darknet  src/parser.c  at f6afaabcdf85f77e7aff2ec55c020c0e297c77f9
    AlexeyAB/darknet  src/parser.c  at 59596d7880f6504768df41d6daa586f5cb2b932f
Section names are the canonical ones of `string_to_layer_type`; `ALIASES` maps the others.

`INFERENCE_KEYS` holds the keys whose value changes a shape, a loaded weight or an output of a forward
(or the detections after it); the rest of a section's keys act only in training (loss, augmentation,
learning rate, weight updates), on GPU scheduling, or on what is printed. Judged from the C code:
  - [convolutional] `assisted_excitation` runs only when `state.train`; `sway`/`rotate`/`stretch`/
    `stretch_sway`/`angle` deform the weights in the update; `dot`, `grad_centr`, `reverse` act in the
    backward pass and the update; `stream`/`wait_stream` pick CUDA streams.
  - [convolutional] `cbn=1` sets batch_normalize=2 (a batch-normalised layer, with its weights file
    layout); `coordconv` overwrites output channels on AlexeyAB's GPU build; `flipped` transposes the
    weights pjreddie's loader reads; `bin_output` changes the XNOR path.
  - `map` of [region]/[yolo] remaps truth classes in the loss; [region] `log` and [detection] `reorg` are
    read and never used; [dropout] is the identity at inference.
"""
from __future__ import annotations


def _keys(text: str) -> frozenset[str]:
    return frozenset(text.split())


ALEXEYAB_COMMIT = "59596d7880f6504768df41d6daa586f5cb2b932f"
PJREDDIE_COMMIT = "f6afaabcdf85f77e7aff2ec55c020c0e297c77f9"

# DARKNET(AlexeyAB parser.c:parse_network_cfg_custom): read after every layer section (not [net])
EVERY_LAYER_ALEXEYAB = _keys("clip onlyforward dont_update burnin_update stopbackward train_only_bn dontload "
                             "dontloadscales learning_rate")
# DARKNET(pjreddie parser.c:parse_network_cfg): read after every layer section (not [net])
EVERY_LAYER_PJREDDIE = _keys("truth onlyforward stopbackward dontsave dontload numload dontloadscales "
                             "learning_rate smooth")
# what the weights loaders skip or cut short (load_weights_upto, load_convolutional_weights)
EVERY_LAYER_INFERENCE = _keys("dontload dontloadscales numload")

ALEXEYAB_KEYS: dict[str, frozenset[str]] = {
    "net": _keys(
        "max_batches batch learning_rate learning_rate_min sgdr_cycle sgdr_mult momentum decay subdivisions "
        "time_steps track augment_speed sequential_subdivisions try_fix_nan weights_reject_freq equidistant_point "
        "badlabels_rejection_percentage num_sigmas_reject_badlabels ema_alpha use_cuda_graph loss_scale "
        "dynamic_minibatch optimized_memory workspace_size_limit_MB adam B1 B2 eps height width channels inputs "
        "max_crop min_crop flip blur gaussian_noise mixup cutmix mosaic letter_box mosaic_bound contrastive "
        "contrastive_jit_flip contrastive_color unsupervised label_smooth_eps resize_step attention adversarial_lr "
        "max_chart_loss angle aspect saturation exposure hue power policy burn_in step scale steps scales "
        "seq_scales gamma show_receptive_field"),
    "convolutional": _keys(
        "filters groups size stride stride_x stride_y dilation antialiasing pad padding activation "
        "assisted_excitation share_index batch_normalize cbn binary xnor bin_output sway rotate stretch "
        "stretch_sway flipped dot angle grad_centr reverse coordconv stream wait_stream"),
    "local": _keys("filters size stride pad activation"),
    "activation": _keys("activation"),
    "rnn": _keys("output hidden activation batch_normalize logistic shortcut"),
    "gru": _keys("output batch_normalize"),
    "lstm": _keys("output batch_normalize"),
    "conv_lstm": _keys("size stride dilation pad padding output groups activation batch_normalize xnor peephole "
                       "bottleneck state_constrain shortcut lstm_activation time_normalizer"),
    "history": _keys("history_size"),
    "crnn": _keys("size stride dilation pad padding output hidden groups activation batch_normalize xnor shortcut"),
    "connected": _keys("output activation batch_normalize"),
    "crop": _keys("crop_height crop_width flip angle saturation exposure noadjust shift"),
    "cost": _keys("type scale ratio"),
    "region": _keys(
        "coords classes num max log sqrt softmax focal_loss jitter resize rescore thresh classfix absolute random "
        "coord_scale object_scale noobject_scale mask_scale class_scale bias_match tree map anchors"),
    "yolo": _keys(
        "classes num mask max show_details max_delta counters_per_class label_smooth_eps scale_x_y "
        "objectness_smooth new_coords iou_normalizer obj_normalizer cls_normalizer delta_normalizer iou_loss "
        "iou_thresh_kind beta_nms nms_kind jitter resize focal_loss ignore_thresh truth_thresh iou_thresh random "
        "track_history_size sim_thresh dets_for_track dets_for_show track_ciou_norm embedding_layer map anchors"),
    "Gaussian_yolo": _keys(
        "classes max num mask max_delta counters_per_class label_smooth_eps scale_x_y objectness_smooth "
        "uc_normalizer iou_normalizer obj_normalizer cls_normalizer delta_normalizer iou_loss iou_thresh_kind "
        "beta_nms nms_kind yolo_point jitter resize ignore_thresh truth_thresh iou_thresh random map anchors"),
    "detection": _keys("coords classes rescore num side softmax sqrt max coord_scale forced object_scale "
                       "noobject_scale class_scale jitter resize random reorg"),
    "softmax": _keys("groups temperature tree spatial noloss"),
    "contrastive": _keys("classes yolo_layer temperature cls_normalizer max_delta contrastive_neg_max"),
    "normalization": _keys("alpha beta kappa size"),
    "batchnorm": _keys(""),
    "maxpool": _keys("stride stride_x stride_y size padding maxpool_depth out_channels antialiasing "
                     "maxpool_zero_nonmax"),
    "local_avgpool": _keys("stride stride_x stride_y size padding"),
    "reorg3d": _keys("stride reverse"),                 # AlexeyAB's parse_reorg
    "reorg": _keys("stride reverse"),                   # AlexeyAB's parse_reorg_old
    "avgpool": _keys(""),
    "route": _keys("layers groups group_id stream wait_stream"),
    "upsample": _keys("stride scale"),
    "shortcut": _keys("activation weights_type weights_normalization from"),
    "scale_channels": _keys("from scale_wh activation"),
    "sam": _keys("from activation"),
    "implicit": _keys("mean std filters atoms"),
    "dropout": _keys("probability dropblock dropblock_size_rel dropblock_size_abs"),
    "empty": _keys(""),
}

PJREDDIE_KEYS: dict[str, frozenset[str]] = {
    "net": _keys(
        "batch learning_rate momentum decay subdivisions time_steps notruth random adam B1 B2 eps height width "
        "channels inputs max_crop min_crop max_ratio min_ratio center clip angle aspect saturation exposure hue "
        "policy burn_in power step scale steps scales gamma max_batches"),
    "convolutional": _keys("filters size stride pad padding groups activation batch_normalize binary xnor "
                           "flipped dot"),
    "deconvolutional": _keys("filters size stride activation batch_normalize pad padding"),
    "local": _keys("filters size stride pad activation"),
    "activation": _keys("activation"),
    "logistic": _keys(""),
    "l2norm": _keys(""),
    "rnn": _keys("output activation batch_normalize shortcut"),
    "gru": _keys("output batch_normalize tanh"),
    "lstm": _keys("output batch_normalize"),
    "crnn": _keys("output_filters hidden_filters activation batch_normalize shortcut"),
    "connected": _keys("output activation batch_normalize"),
    "crop": _keys("crop_height crop_width flip angle saturation exposure noadjust shift"),
    "cost": _keys("type scale ratio noobj thresh"),
    "region": _keys(
        "coords classes num log sqrt softmax background max jitter rescore thresh classfix absolute random "
        "coord_scale object_scale noobject_scale mask_scale class_scale bias_match tree map anchors"),
    "yolo": _keys("classes num mask max jitter ignore_thresh truth_thresh random map anchors"),
    "iseg": _keys("classes ids"),
    "detection": _keys("coords classes rescore num side softmax sqrt max coord_scale forced object_scale "
                       "noobject_scale class_scale jitter random reorg"),
    "softmax": _keys("groups temperature tree spatial noloss"),
    "normalization": _keys("alpha beta kappa size"),
    "batchnorm": _keys(""),
    "maxpool": _keys("stride size padding"),
    "reorg": _keys("stride reverse flatten extra"),
    "avgpool": _keys(""),
    "route": _keys("layers"),
    "upsample": _keys("stride scale"),
    "shortcut": _keys("from activation alpha beta"),
    "dropout": _keys("probability"),
}

# Of the keys above (either Darknet), those that change a shape, a loaded weight or an inference result.
INFERENCE_KEYS: dict[str, frozenset[str]] = {
    "net": _keys("height width channels inputs letter_box"),
    "convolutional": _keys("filters groups size stride stride_x stride_y dilation antialiasing pad padding "
                           "activation share_index batch_normalize cbn binary xnor bin_output flipped coordconv"),
    "deconvolutional": PJREDDIE_KEYS["deconvolutional"],
    "local": ALEXEYAB_KEYS["local"],
    "activation": ALEXEYAB_KEYS["activation"],
    "rnn": ALEXEYAB_KEYS["rnn"] | PJREDDIE_KEYS["rnn"],
    "gru": ALEXEYAB_KEYS["gru"] | PJREDDIE_KEYS["gru"],
    "lstm": ALEXEYAB_KEYS["lstm"],
    "conv_lstm": ALEXEYAB_KEYS["conv_lstm"],
    "history": ALEXEYAB_KEYS["history"],
    "crnn": ALEXEYAB_KEYS["crnn"] | PJREDDIE_KEYS["crnn"],
    "connected": ALEXEYAB_KEYS["connected"],
    "crop": _keys("crop_height crop_width noadjust"),   # flip, angle, colour and shift only when training
    "region": _keys("coords classes num softmax background tree anchors"),
    "yolo": _keys("classes num mask scale_x_y new_coords beta_nms nms_kind anchors"),
    "Gaussian_yolo": _keys("classes num mask scale_x_y beta_nms nms_kind yolo_point anchors"),
    "iseg": PJREDDIE_KEYS["iseg"],
    "detection": _keys("coords classes num side softmax sqrt"),
    "softmax": _keys("groups temperature tree spatial"),
    "contrastive": _keys("classes yolo_layer"),
    "normalization": ALEXEYAB_KEYS["normalization"],
    "maxpool": ALEXEYAB_KEYS["maxpool"],
    "local_avgpool": ALEXEYAB_KEYS["local_avgpool"],
    "reorg3d": ALEXEYAB_KEYS["reorg3d"],
    "reorg": PJREDDIE_KEYS["reorg"],
    "route": _keys("layers groups group_id"),
    "upsample": ALEXEYAB_KEYS["upsample"],
    "shortcut": ALEXEYAB_KEYS["shortcut"] | PJREDDIE_KEYS["shortcut"],
    "scale_channels": ALEXEYAB_KEYS["scale_channels"],
    "sam": ALEXEYAB_KEYS["sam"],
    "implicit": _keys("filters atoms"),   # mean and std only initialise the weights
}

# DARKNET(parser.c:string_to_layer_type): the other names of a section
ALIASES = {"network": "net", "conv": "convolutional", "deconv": "deconvolutional", "conn": "connected",
           "max": "maxpool", "local_avg": "local_avgpool", "avg": "avgpool", "lrn": "normalization",
           "soft": "softmax", "silence": "empty"}


def _canonical(kind: str) -> str:
    return ALIASES.get(kind, kind)


def _read_by(kind: str, table: dict[str, frozenset[str]], every_layer: frozenset[str]) -> frozenset[str]:
    kind = _canonical(kind)
    if kind not in table:
        return frozenset()
    return table[kind] if kind == "net" else table[kind] | every_layer


def readers(kind: str, key: str) -> list[str]:
    """The Darknets ("pjreddie", "AlexeyAB") whose parser reads `key` in a `[kind]` section."""
    return [name for name, table, every in (("pjreddie", PJREDDIE_KEYS, EVERY_LAYER_PJREDDIE),
                                            ("AlexeyAB", ALEXEYAB_KEYS, EVERY_LAYER_ALEXEYAB))
            if key in _read_by(kind, table, every)]


def known_keys(kind: str) -> frozenset[str]:
    """Every key either Darknet reads in a `[kind]` section."""
    return (_read_by(kind, PJREDDIE_KEYS, EVERY_LAYER_PJREDDIE)
            | _read_by(kind, ALEXEYAB_KEYS, EVERY_LAYER_ALEXEYAB))


def changes_inference(kind: str, key: str) -> bool:
    """Whether a Darknet reads `key` in `[kind]` and its value changes a shape, weights or an output."""
    kind = _canonical(kind)
    every = EVERY_LAYER_INFERENCE if kind != "net" else frozenset()
    return key in known_keys(kind) and (key in INFERENCE_KEYS.get(kind, frozenset()) or key in every)
