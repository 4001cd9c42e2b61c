"""The latentcadx bundle: the user's commands with configs/smoke.yaml (training with the paper's three
stages and both baselines, evaluation, whole-image inference through ``python -m monai.bundle``), the
whole-image probability map equal to a patch run where a tile covers the patch, MONAI Label's label
layout, and plugin components by name."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bundle_runner import BundleRunner

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "latentcadx"
CONFIGS = BUNDLE / "configs"


RUNNER = BundleRunner("latentcadx")
config_files, run_bundle, dirs, parser_of = RUNNER.config_files, RUNNER.run, RUNNER.dirs, RUNNER.parser


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    tmp = tmp_path_factory.mktemp("latentcadx")
    return tmp, run_bundle(["training", "--config_file", config_files("train.yaml", "smoke.yaml"), *dirs(tmp)])


def test_layout_links_and_ablations():
    for name in ("train.yaml", "metadata.json", "logging.conf"):
        assert (BUNDLE / name).is_symlink() and os.readlink(BUNDLE / name) == f"configs/{name}"
    ablations = sorted(p.name for p in (CONFIGS / "ablations").glob("*.yaml"))
    assert ablations == ["ceiling_true_masks.yaml", "literal_weights.yaml", "no_inb.yaml", "no_oob.yaml", "no_pretraining.yaml"]
    for name in ablations:  # an ablation never overwrites the default model
        ckpt = parser_of("train.yaml", f"ablations/{name}").get_parsed_content("ckpt_dir")
        assert Path(ckpt) != BUNDLE / "models" and BUNDLE / "models" in Path(ckpt).parents
    metadata = json.loads((CONFIGS / "metadata.json").read_text())
    assert metadata["network_data_format"]["outputs"]["pred"]["channel_def"] == {"0": "background", "1": "lesion"}
    # the loss weights: METHODS.md's default, the literal ones in the ablation
    assert [parser_of("train.yaml").get_parsed_content(k) for k in ("cls_weight", "inb_weight", "oob_weight")] == [2.0, 0.5, 1.0]
    literal = parser_of("train.yaml", "ablations/literal_weights.yaml")
    assert [literal.get_parsed_content(k) for k in ("cls_weight", "inb_weight", "oob_weight")] == [2.0, 1.0, 0.5]


def test_smoke_training_evaluation_and_inference_through_monai_bundle(smoke):
    tmp, trained = smoke
    log = trained.stdout + trained.stderr
    for tag in ("pretrain_loss", "decoder_loss", "train_loss", "unet_loss", "fcn_loss"):
        assert tag in log, f"stage {tag} did not run"
    assert "val_auc" in log and "val_iop" in log  # printed at each validation
    checkpoint = torch.load(tmp / "models" / "model.pt", weights_only=True)
    assert checkpoint["network_spec"]["decoder_channels"] == [8, 4, 4, 4, 4]
    assert sorted(p.name for p in (tmp / "models" / "stages").glob("*.pt")) == ["fcn.pt", "unet.pt"]
    run_bundle(["evaluating", "--config_file", config_files("train.yaml", "evaluate.yaml", "smoke.yaml"), *dirs(tmp)])
    metrics = json.loads((tmp / "eval" / "metrics.json").read_text())
    assert set(metrics["models"]) == {"latentcadx", "unet", "fcn", "coarse_outline", "intensity_rule"}  # no ceiling trained here
    for key in ("roc_auc", "ap", "f1", "seg_ap_iou05", "iop", "ioa", "confused_pixels", "true_dice"):
        assert key in metrics and f"{key}_ci" in metrics and key in metrics["models"]["unet"]["overall"]
    outline = metrics["models"]["coarse_outline"]["overall"]
    assert outline["iop"] == 1.0 and outline["ioa"] == 1.0 and outline["confused_pixels"] == 0.0  # the annotation itself
    # whole-image inference on the held-out set's test images
    datalist = next((tmp / "phantoms").glob("mammogram-n6-s1-*")) / "datalist.json"
    run_bundle(["inferring", "--config_file", config_files("inference.yaml", "smoke.yaml"), "--input_path", str(datalist),
                "--ckpt_dir", str(tmp / "models"), "--output_dir", str(tmp / "infer")])  # fmt: skip
    test_items = json.loads(datalist.read_text())["test"]
    for item in test_items:
        stem = Path(item["image"]).stem
        record = json.loads((tmp / "infer" / f"{stem}.json").read_text())
        assert record["coordinates"] == "original_pixels" and record["image_size"] == [256, 192]
        label = np.array(Image.open(tmp / "infer" / f"{stem}_label.png"))
        assert label.shape == (256, 192) and set(np.unique(label)) <= {0, 255}
        assert (tmp / "infer" / f"{stem}_prob.nii.gz").is_file()


def test_whole_image_map_equals_a_patch_run_where_a_tile_covers_it():
    """The sliding window over a whole image (no overlap, every tile inside the breast) gives, on a
    tile, exactly the network's map for that patch alone (mask x classification probability)."""
    from monai_mammo.engines.latentcadx import LesionMapInferer
    from monai_mammo.networks.latentcadx import LatentCADxNet

    torch.manual_seed(0)
    net = LatentCADxNet(block_inplanes=(4, 4, 8, 8), decoder_channels=(8, 4, 4, 4, 4)).eval()
    image = torch.rand(1, 1, 128, 192) + 0.1  # non-zero: all breast
    from monai_mammo.inferers.breast_sliding_window import nonzero_mask

    inferer = LesionMapInferer(roi_size=(64, 64), sw_batch_size=4, overlap=0.0, mask_fn=nonzero_mask, network_kwargs={"output": "map"})
    with torch.no_grad():
        whole = inferer(image, net)
        for y0, x0 in ((0, 0), (64, 128)):
            patch = net(image[..., y0 : y0 + 64, x0 : x0 + 64], output="map")
            torch.testing.assert_close(whole[..., y0 : y0 + 64, x0 : x0 + 64], patch, rtol=1e-5, atol=1e-6)
    # overlapping tiles blend: inside, the map stays a probability
    with torch.no_grad():
        blended = LesionMapInferer(roi_size=(64, 64), overlap=0.5, mode="gaussian", network_kwargs={"output": "map"})(image, net)
    assert blended.shape == image.shape and 0 <= float(blended.min()) and float(blended.max()) <= 1


def test_monai_label_postprocessing_gives_a_uint8_label_in_its_layout():
    from monai.data import MetaTensor

    parser = parser_of("inference.yaml")
    post = parser.get_parsed_content("postprocessing")
    image = MetaTensor(torch.zeros(1, 32, 24), meta={"original_size": [64, 48], "spacing": [0.25, 0.25],
                                                    "pixel_to_original": [[2.0, 0, 0.5], [0, 2.0, 0.5], [0, 0, 1]]})  # fmt: skip
    pred = torch.zeros(1, 32, 24)
    pred[:, 4:10, 2:8] = 0.8
    d = post({"image": image, "pred": pred})
    assert d["pred"].dtype == torch.uint8 and tuple(d["pred"].shape) == (48, 64)  # (W, H) on the stored grid
    assert 120 <= int(d["pred"].sum()) <= 170  # the 12 x 12 stored pixels of the 6 x 6 patch, edges bilinear
    [lesion] = d["pred_lesions"]
    assert lesion["box"] == [4.0, 8.0, 16.0, 20.0] and lesion["score"] == pytest.approx(0.8)
    assert d["result"]["boxes"] == d["pred_lesions"] and d["result"]["coordinates"] == "original_pixels"


def test_plugin_components_by_name():
    """A 'tensor' loss of the extras plugin cannot take the dict targets (rejected naming it); the
    plugin's metric swaps in for a validation metric with one override."""
    from monai_mammo.registry import IncompatibleComponentError, list_components

    if "asymmetric_focal" not in list_components()["loss"]:
        pytest.skip("the monai-mammo-extras plugin is not installed")
    with pytest.raises(Exception) as info:
        parser_of("train.yaml", **{"loss#name": "asymmetric_focal"}).get_parsed_content("loss")
    error = info.value
    while error is not None and not isinstance(error, IncompatibleComponentError):
        error = error.__cause__
    assert isinstance(error, IncompatibleComponentError) and "latent_cadx" in str(error)
    parser = parser_of("train.yaml", **{"validate#additional_metrics#val_auc#metric_fn#name": "expected_calibration_error"})
    handler = parser.get_parsed_content("validate#additional_metrics#val_auc")
    assert type(handler.metric_fn).__name__ == "ExpectedCalibrationErrorMetric"
    probability, label = handler._output_transform({"pred": {"logit": torch.tensor([[3.0], [-3.0]])}, "label": {"label": torch.tensor([1, 0])}})
    handler.metric_fn(probability, label)
    assert float(handler.metric_fn.aggregate()) == pytest.approx(1 - torch.sigmoid(torch.tensor(3.0)).item(), abs=1e-4)
