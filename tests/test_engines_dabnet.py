"""Unit tests of monai_mammo.engines.dabnet: MalignancyToLabeld (MONAI Label output), evaluation,
the repeat command, and ROI inference (crops and full images with boxes)."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor

from monai_mammo.engines.dabnet import (
    CropRoiBoxd,
    MalignancyToLabeld,
    evaluate_bundle,
    infer_rois,
    mass_pool,
    predict,
    repeat_training_command,
    roi_items,
)
from monai_mammo.metrics.classification import roc_auc
from monai_mammo.transforms.label_app import ToLabelAppLayoutd


@pytest.mark.parametrize("prob, value, name", [(0.8, 2, "malignant"), (0.2, 1, "benign"), (0.5, 2, "malignant")])
@pytest.mark.parametrize("shape", [(1,), (1, 1)])
def test_malignancy_to_label_original_size(prob, value, name, shape):
    image = MetaTensor(torch.zeros(1, 64, 64), meta={"spatial_shape": (40, 30)})  # PILReader order: W=40, H=30
    d = MalignancyToLabeld(keys="pred", ref_key="image", spatial_shape_order="wh")({"image": image, "pred": torch.full(shape, prob)})
    assert d["pred"].shape == (1, 30, 40) and d["pred"].dtype == torch.uint8
    assert torch.all(d["pred"] == value)
    assert d["result"] == {"malignancy_probability": pytest.approx(prob), "label": name}


def test_malignancy_to_label_rows_first_spatial_shape(tmp_path):
    """The default order is the project reader's (rows first), as the bundle reads its images."""
    import numpy as np
    from PIL import Image

    from monai_mammo.transforms.io import LoadRadiographd

    image = MetaTensor(torch.zeros(1, 8, 8), meta={"spatial_shape": (30, 40)})
    d = MalignancyToLabeld(keys="pred")({"image": image, "pred": torch.tensor([0.1])})
    assert d["pred"].shape == (1, 30, 40)
    Image.fromarray(np.zeros((30, 20), dtype=np.uint8)).save(tmp_path / "roi.png")  # H=30, W=20
    loaded = LoadRadiographd(keys="image")({"image": str(tmp_path / "roi.png")})
    d = MalignancyToLabeld(keys="pred")({**loaded, "pred": torch.tensor([0.9])})
    assert d["pred"].shape == (1, 30, 20)


def test_malignancy_to_label_matches_pil_reader(tmp_path):
    """MONAI's PILReader(reverse_indexing=False) gives a (1, H, W) array but spatial_shape (W, H)."""
    import numpy as np
    from monai.data import PILReader
    from monai.transforms import LoadImage
    from PIL import Image

    Image.fromarray(np.zeros((30, 20), dtype=np.uint8)).save(tmp_path / "roi.png")  # H=30, W=20
    image = LoadImage(reader=PILReader(reverse_indexing=False), image_only=True, ensure_channel_first=True)(str(tmp_path / "roi.png"))
    assert image.shape == (1, 30, 20)
    d = MalignancyToLabeld(keys="pred", spatial_shape_order="wh")({"image": image, "pred": torch.tensor([0.9])})
    assert d["pred"].shape == (1, 30, 20)


def test_malignancy_to_label_threshold_and_fallback_size():
    # no spatial_shape in meta (or a plain tensor): the current image size is used
    d = MalignancyToLabeld(keys="pred", threshold=0.9)({"image": torch.zeros(1, 7, 5), "pred": torch.tensor([0.8])})
    assert d["pred"].shape == (1, 7, 5) and torch.all(d["pred"] == 1) and d["result"]["label"] == "benign"


def test_malignancy_to_label_then_label_app_layout():
    image = MetaTensor(torch.zeros(1, 16, 16), meta={"spatial_shape": (12, 9)})  # H=12, W=9
    d = MalignancyToLabeld(keys="pred")({"image": image, "pred": torch.tensor([[0.7]])})
    d = ToLabelAppLayoutd(keys="pred")(d)
    assert d["pred"].shape == (9, 12) and tuple(d["image"].meta["spatial_shape"]) == (9, 12)


def test_malignancy_to_label_rejects_bad_input():
    with pytest.raises(ValueError, match=r"pred: expected one malignancy probability.*\(2,\)"):
        MalignancyToLabeld(keys="pred")({"image": torch.zeros(1, 4, 4), "pred": torch.tensor([0.1, 0.9])})
    with pytest.raises(KeyError, match="reference key 'image'"):
        MalignancyToLabeld(keys="pred")({"pred": torch.tensor([0.1])})



# --- evaluation --------------------------------------------------------------------------------------
def _tiny_net(decoders="none"):
    from monai_mammo.networks.dabnet import DABNet

    torch.manual_seed(0)
    return DABNet(decoders=decoders, decoder_channels=(4, 4, 4, 4, 4)).eval()


def test_evaluate_bundle_writes_metrics_and_loads_strictly(tmp_path):
    import json

    from monai_mammo.checkpoints import save_network

    net = _tiny_net()
    checkpoint = save_network(net, tmp_path / "model.pt")
    g = torch.Generator().manual_seed(1)
    batches = [
        {"image": torch.rand(4, 1, 32, 32, generator=g), "label": torch.tensor([[0.0], [1.0], [1.0], [0.0]]),
         "obscured": torch.tensor([True, True, False, False])}
        for _ in range(3)
    ]  # fmt: skip
    evaluated = _tiny_net()
    torch.nn.init.constant_(evaluated.classifier[-1].bias, 3.0)  # weights differ until the checkpoint loads
    summary = evaluate_bundle(evaluated, batches, "cpu", checkpoint, tmp_path / "out" / "metrics.json", n_bootstrap=20, eval_description="d")
    expected = predict(net, batches, "cpu")
    assert summary["overall"]["auc"] == pytest.approx(roc_auc(expected["prob"], expected["label"]))
    assert summary["obscured"]["n"] == 6 and summary["clear"]["n"] == 6
    written = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert written["description"] == "d" and written["runs"][0]["checkpoint"] == str(checkpoint)
    with pytest.raises(ValueError, match=r"model\.pt.*different network.*decoders"):
        evaluate_bundle(_tiny_net("both"), batches, "cpu", checkpoint, tmp_path / "m.json")
    with pytest.raises(ValueError, match="monai.bundle run"):
        evaluate_bundle(net, batches, "cpu", checkpoint, tmp_path / "m.json", repeats=2, command=["pytest", "-q"])


def test_repeat_training_command_keeps_ablation_files_and_overrides():
    argv = [
        "/venv/monai/bundle/__main__.py", "run", "evaluating",
        "--config_file=['b/configs/train.yaml', 'b/configs/ablations/simple.yaml', 'b/configs/evaluate.yaml']",
        "--epochs", "3", "--eval_phantom#seed", "7", "--eval#repeats=4", "--ckpt_dir", "/old", "--compositor#mass_weight=0.3",
    ]  # fmt: skip
    cmd = repeat_training_command(argv, seed=12, ckpt_dir="/runs/run_2")
    assert cmd[1:6] == ["-m", "monai.bundle", "run", "training", "--config_file"]
    assert cmd[6] == "['b/configs/train.yaml', 'b/configs/ablations/simple.yaml']"
    assert cmd[7:] == ["--epochs", "3", "--compositor#mass_weight", "0.3", "--seed", "12", "--ckpt_dir", "/runs/run_2"]
    single = repeat_training_command(["m", "run", "--config_file", "t.yaml,evaluate.yaml"], seed=0, ckpt_dir="c")
    assert single[6] == "['t.yaml']"
    with pytest.raises(ValueError, match="benchmarks/dabnet_ablation.py"):
        repeat_training_command(["python", "evaluate.py"], seed=0, ckpt_dir="c")


def test_mass_pool_prefers_the_masses_list(tmp_path):
    import json

    items = {"training": [{"image": "a.png", "label": 1, "obscured": True}, {"image": "b.png", "label": 0, "obscured": False}]}
    (tmp_path / "without.json").write_text(json.dumps(items))
    assert [m["image"] for m in mass_pool(tmp_path / "without.json")] == [str(tmp_path / "b.png")]
    (tmp_path / "with.json").write_text(json.dumps({**items, "masses": [{"image": "m.png", "label": 1, "box": [1, 1, 4, 4]}]}))
    assert [m["image"] for m in mass_pool(tmp_path / "with.json")] == [str(tmp_path / "m.png")]


# --- ROI inference -------------------------------------------------------------------------------------
def test_crop_roi_box_floors_ceils_clips_and_passes_crops():
    image = MetaTensor(torch.arange(6 * 8, dtype=torch.float32).reshape(1, 6, 8), meta={"filename_or_obj": "full.png"})
    d = CropRoiBoxd(keys="image")({"image": image, "roi_box": [-2.0, 1.5, 3.2, 4.0]})
    torch.testing.assert_close(d["image"].as_tensor(), image.as_tensor()[:, 1:4, 0:4])
    assert CropRoiBoxd(keys="image")({"image": image})["image"] is image  # a ROI crop passes unchanged
    with pytest.raises(ValueError, match=r"full\.png: roi_box \[10.0, 0.0, 12.0, 2.0\] lies outside the 6x8 image"):
        CropRoiBoxd(keys="image")({"image": image, "roi_box": [10.0, 0.0, 12.0, 2.0]})


def test_roi_items_square_crop_around_each_box():
    items = roi_items([{"image": "a.png", "boxes": [[10, 20, 30, 30], [0, 0, 4, 2]]}, "roi.png"], crop_scale=2.0)
    assert items[0]["roi_box"] == [0.0, 5.0, 40.0, 45.0]  # side 2 x max(20, 10) around (20, 25)
    assert items[1]["roi_box"] == [-14.0, -15.0, 18.0, 17.0]  # min_crop 32 for a small box
    assert items[0]["source"] == "a.png#box0" and items[2]["roi_box"] is None
    with pytest.raises(ValueError, match="empty or inverted"):
        roi_items([{"image": "a.png", "boxes": [[10, 20, 5, 30]]}])


def _chain(size):
    from monai.transforms import Resized, ScaleIntensityd

    from monai_mammo.transforms.io import LoadRadiographd

    return [LoadRadiographd(keys="image"), CropRoiBoxd(keys="image"), ScaleIntensityd(keys="image"), Resized(keys="image", spatial_size=(size, size))]


def test_infer_rois_crop_and_full_image_box_equal_the_evaluation_path(tmp_path):
    """A ROI PNG and a full image whose box crops exactly that ROI get the probability that the
    evaluation path (predict over the same chain + targets) gives the ROI."""
    import json

    import numpy as np
    import torch.nn.functional as F
    from monai.data import DataLoader, Dataset
    from monai.transforms import Compose, EnsureTyped, Lambdad
    from PIL import Image

    rng = np.random.default_rng(0)
    roi = rng.integers(0, 256, (40, 40), dtype=np.uint8)
    full = rng.integers(0, 256, (100, 120), dtype=np.uint8)
    full[20:60, 30:70] = roi  # the ROI at x 30..70, y 20..60
    Image.fromarray(roi).save(tmp_path / "roi.png")
    Image.fromarray(full).save(tmp_path / "full.png")
    net = _tiny_net("both")
    inputs = [str(tmp_path / "roi.png"), {"image": str(tmp_path / "full.png"), "boxes": [[40, 30, 60, 50]]}, str(tmp_path / "missing.png")]
    results = infer_rois(net, inputs, _chain(32), tmp_path / "out", save_png=True)
    assert len(results) == 2 and results[1]["roi_box"] == [30.0, 20.0, 70.0, 60.0] and results[1]["box"] == [40.0, 30.0, 60.0, 50.0]
    skipped = json.loads((tmp_path / "out" / "skipped.json").read_text())
    assert skipped[0]["source"].endswith("missing.png") and "file not found" in skipped[0]["reason"]
    assert (tmp_path / "out" / results[0]["png"]).is_file()
    evaluation = Compose(_chain(32) + [Lambdad("label", lambda y: torch.as_tensor(y, dtype=torch.float32).reshape(1)),
                                       EnsureTyped(["image", "label"], dtype=torch.float32, track_meta=False)])  # fmt: skip
    loader = DataLoader(Dataset([{"image": str(tmp_path / "roi.png"), "label": 1}], evaluation), batch_size=1)
    expected = float(predict(net, loader, "cpu")["prob"][0])
    assert results[0]["probability"] == pytest.approx(expected, abs=1e-7)
    assert results[1]["probability"] == pytest.approx(expected, abs=1e-7)
    # the old path (bilinear resize) feeds the network another input: the check above can fail
    area = evaluation({"image": str(tmp_path / "roi.png"), "label": 1})["image"]
    bilinear = F.interpolate(torch.as_tensor(roi, dtype=torch.float32)[None, None] / 255, size=(32, 32), mode="bilinear")[0]
    assert float((area - bilinear).abs().max()) > 1e-3
