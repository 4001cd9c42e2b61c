"""What a bundle must do for MONAI Label (issue 17), checked without the app where possible.

The stock ``monaibundle`` app of MONAI Label 0.8.5 parses ``configs/inference.yaml`` once, builds
``network_def`` and loads ``models/<model_filename>`` (default: the first ``models/*.pt``) into it,
runs ``preprocessing`` on ``{"image": path, **request params}``, the ``inferer``, and
``postprocessing`` (the same transform objects for every request), writes ``pred`` and returns
``data["result"]`` as the JSON part. Training goes through run id ``run`` with datastore items
``{"image": path, "label": label image path}`` and ``train#trainer#max_epochs`` overridden.

The tests here do the same with ``monai.bundle.ConfigParser`` / ``ConfigWorkflow``; the slow test at
the end starts the real server (MONAI Label installed, ``--run-slow``).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
ASN, DABNET = REPO / "bundles" / "asn", REPO / "bundles" / "dabnet"


def _parser(files, **overrides):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(f) for f in files])
    for key, value in overrides.items():
        parser[key] = value
    return parser


def _mammogram_png(path: Path, dots: list[tuple[int, int]]) -> Path:
    """A 256 x 208 uint16 'breast' (an ellipse against a dark background) with bright dots (x, y)."""
    yy, xx = np.mgrid[:256, :208]
    img = np.where(((xx / 180.0) ** 2 + ((yy - 128) / 120.0) ** 2) < 1.0, 20000, 500).astype(np.float64)
    img += np.random.default_rng(0).normal(0, 300, img.shape)
    for x, y in dots:
        img[y - 1: y + 2, x - 1: x + 2] += 20000
    Image.fromarray(np.clip(img, 0, 65535).astype(np.uint16)).save(path)
    return path


@pytest.fixture(scope="module")
def asn_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/model.pt and models/stages/fpr.pt of small networks (random weights, fixed seed)."""
    from monai_mammo.checkpoints import save_network
    from monai_mammo.networks.asn import AnomalySeparationUNet, FalsePositiveReductionClassifier

    torch.manual_seed(0)
    models = tmp_path_factory.mktemp("asn") / "models"
    save_network(AnomalySeparationUNet(channels=[4, 8, 8, 8], input_skip=True, head_init_scale=0.05), models / "model.pt")
    save_network(FalsePositiveReductionClassifier(crop_size=24, input_size=32, crop_normalization="mean"),
                 models / "stages" / "fpr.pt")
    return models


def _app_like_infer(parser, network, request: dict) -> dict:
    """preprocessing -> inferer -> postprocessing on one request, as the bundle app runs them."""
    from monai.transforms import Compose

    pre = parser.get_parsed_content("preprocessing")
    data = dict(request)
    for t in (pre.transforms if isinstance(pre, Compose) else pre):
        data = t(data)
    with torch.no_grad():
        data["pred"] = parser.get_parsed_content("inferer")(data["image"][None].float(), network.eval())[0]
    post = parser.get_parsed_content("postprocessing")
    for t in (post.transforms if isinstance(post, Compose) else post):
        data = t(data)
    return data


def test_asn_models_layout_makes_the_apps_default_model_right(asn_models: Path) -> None:
    """The app offers (and defaults to) models/*.pt sorted by name length: model.pt alone."""
    assert sorted(p.name for p in asn_models.glob("*.pt")) == ["model.pt"]
    infer = _parser([ASN / "configs" / "inference.yaml"], bundle_root=str(ASN))
    train = _parser([ASN / "configs" / "train.yaml"], bundle_root=str(ASN))
    for parser in (infer, train):
        assert Path(parser.get_parsed_content("fpr_path")).parent.name == "stages"
    assert train["fpr_stage"]["save"]["path"] == "@fpr_path"


@pytest.mark.parametrize("bundle", ["asn", "dabnet"])
def test_network_def_loads_only_its_own_weights_strictly(bundle: str, asn_models: Path, tmp_path: Path) -> None:
    """The app loads model.pt non-strictly: network_def must refuse any other file, naming model.pt."""
    from monai_mammo.checkpoints import save_network
    from monai_mammo.networks.dabnet import DABNet

    if bundle == "asn":
        ckpt, overrides = asn_models / "model.pt", {"ckpt_path": str(asn_models / "model.pt")}
        wrong = torch.load(asn_models / "stages" / "fpr.pt", weights_only=True)["model"]
        parser = _parser([ASN / "configs" / "inference.yaml"], bundle_root=str(ASN), **overrides)
    else:
        ckpt = Path(save_network(DABNet(decoder_channels=[4, 4, 4, 4, 4]), tmp_path / "models" / "model.pt"))
        parser = _parser([DABNET / "configs" / "inference.yaml"], bundle_root=str(DABNET), ckpt_dir=str(tmp_path / "models"))
        wrong = {k: v for k, v in torch.load(ckpt, weights_only=True)["model"].items() if "decoder" not in k}
    network_def = copy.deepcopy(parser.get_parsed_content("network_def"))  # the app loads into a deep copy
    state = torch.load(ckpt, weights_only=True)["model"]
    network_def.load_state_dict(state, strict=False)  # the right file: fine, whatever strict says
    with pytest.raises(ValueError, match=r"model\.pt"):
        network_def.load_state_dict(wrong, strict=False)


def test_asn_inference_as_the_app_runs_it(asn_models: Path, tmp_path: Path) -> None:
    """Request params (spacing) reach the reader; data["result"] holds the findings in original pixels,
    the label's discs sit on them; a newly written FPR file is used by the same transforms."""
    from monai_mammo.checkpoints import save_network
    from monai_mammo.networks.asn import FalsePositiveReductionClassifier

    image = _mammogram_png(tmp_path / "case.png", [(60, 100), (90, 150), (120, 80)])
    parser = _parser([ASN / "configs" / "inference.yaml"], bundle_root=str(ASN), ckpt_dir=str(asn_models),
                     target_spacing=0.14, **{"inferer#roi_size": [256, 256], "candidates#max_candidates": 30})
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(torch.load(asn_models / "model.pt", weights_only=True)["model"], strict=False)
    data = _app_like_infer(parser, network, {"image": str(image), "spacing": [0.14, 0.14]})

    result = data["result"]
    assert result["coordinates"] == "original_pixels" and result["spacing"] == pytest.approx([0.14, 0.14])
    findings = result["findings"]
    assert len(findings) > 0
    assert set(findings[0]) == {"x", "y", "score", "asn_score", "fpr_score", "area"}
    assert all(f["score"] == pytest.approx(f["asn_score"] * f["fpr_score"]) for f in findings)
    assert [f["score"] for f in findings] == sorted((f["score"] for f in findings), reverse=True)
    assert all(0 <= f["x"] < 208 and 0 <= f["y"] < 256 for f in findings)
    json.dumps(result)  # what the app serialises
    label = np.asarray(data["pred"])  # (W, H): the layout the app writes the right way round
    assert label.shape == (208, 256) and label.dtype == np.uint8
    for f in findings[: parser["label_max_points"]]:
        assert label[int(round(f["x"])), int(round(f["y"]))] == 1

    # a training run rewrites the FPR: the same (cached) postprocessing objects use the new weights
    before = [f["fpr_score"] for f in findings]
    torch.manual_seed(1)
    fpr_path = asn_models / "stages" / "fpr.pt"
    old = fpr_path.read_bytes()
    try:
        save_network(FalsePositiveReductionClassifier(crop_size=24, input_size=32, crop_normalization="mean"), fpr_path)
        os.utime(fpr_path, (time.time() + 2, time.time() + 2))
        again = _app_like_infer(parser, network, {"image": str(image), "spacing": [0.14, 0.14]})
        after = {(f["x"], f["y"]): f["fpr_score"] for f in again["result"]["findings"]}
        assert sorted(after.values()) != sorted(before)
    finally:
        fpr_path.write_bytes(old)


def test_missing_spacing_names_the_image_and_the_request_param(asn_models: Path, tmp_path: Path) -> None:
    from monai_mammo.transforms.io import MissingSpacingError

    image = _mammogram_png(tmp_path / "nospacing.png", [])
    parser = _parser([ASN / "configs" / "inference.yaml"], bundle_root=str(ASN), ckpt_dir=str(asn_models))
    with pytest.raises(MissingSpacingError) as info:
        _app_like_infer(parser, None, {"image": str(image)})
    message = str(info.value)
    assert "nospacing.png" in message and '"spacing": [sx, sy]' in message
    assert isinstance(info.value, ValueError)


def test_asn_one_epoch_run_saves_every_stage(tmp_path: Path) -> None:
    """MONAI Label's `run` with max_epochs 1 < val_interval: validated and saved at the end, the FPR
    mined with THIS run's ASN (an older model.pt is not used), both files rewritten."""
    from monai.bundle import ConfigWorkflow

    from monai_mammo.checkpoints import save_network
    from monai_mammo.networks.asn import AnomalySeparationUNet

    models = tmp_path / "models"
    stale = save_network(AnomalySeparationUNet(channels=[8, 16, 32, 64], input_skip=True, pad_mode="reflect",
                                               head_init_scale=0.05), models / "model.pt")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    configs = ASN / "configs"
    wf = ConfigWorkflow(config_file=[str(configs / "train.yaml"), str(configs / "smoke.yaml")], workflow_type="train",
                        run_id="run", **{"phantom#cache_dir": str(tmp_path / "phantoms"), "ckpt_dir": str(models),
                                         "log_dir": str(tmp_path / "runs"), "val_interval": 5})
    wf.parser["train#trainer#max_epochs"] = 1
    wf.initialize()
    mined = []

    class Record(logging.Handler):  # the bundle's logging.conf may stop propagation to pytest's handler
        def emit(self, record: logging.LogRecord) -> None:
            mined.append(record.getMessage())

    handler = Record(level=logging.INFO)
    engine_logger = logging.getLogger("monai_mammo.engines.asn")
    engine_logger.addHandler(handler)
    start = time.time()
    try:
        wf.run()
    finally:
        engine_logger.removeHandler(handler)
    wf.finalize()
    assert os.path.getmtime(models / "model.pt") >= start  # validated + saved although 1 < val_interval
    assert f"FPR mining with the ASN weights of {models / 'model.pt'}" in mined  # this run's, not the stale one
    assert os.path.getmtime(models / "stages" / "fpr.pt") >= start
    assert sorted(p.name for p in models.glob("*.pt")) == ["model.pt"]


def _roi_items(datalist: Path, key: str, labels_dir: Path) -> list[dict]:
    """The datalist's ROIs as MONAI Label datastore items: a label image (1 benign, 2 malignant)."""
    items = []
    labels_dir.mkdir(parents=True, exist_ok=True)
    for item in json.loads(datalist.read_text())[key]:
        image = datalist.parent / item["image"]
        size = Image.open(image).size
        label = labels_dir / f"{image.stem}.png"
        Image.fromarray(np.full(size[::-1], 1 + int(item["label"]), np.uint8)).save(label)
        items.append({"image": str(image), "label": str(label)})
    return items


def test_dabnet_run_trains_from_label_images(tmp_path: Path) -> None:
    from monai.bundle import ConfigWorkflow

    configs = DABNET / "configs"
    models = tmp_path / "models"
    wf = ConfigWorkflow(config_file=[str(configs / "train.yaml"), str(configs / "smoke.yaml")], workflow_type="train",
                        run_id="run", **{"phantom#cache_dir": str(tmp_path / "phantoms"), "ckpt_dir": str(models),
                                         "val_interval": 5})
    datalist = Path(wf.parser.get_parsed_content("datalist_file"))
    wf.parser["train#dataset#data"] = _roi_items(datalist, "training", tmp_path / "labels")
    wf.parser["validate#dataset#data"] = _roi_items(datalist, "validation", tmp_path / "labels")
    wf.parser["train#trainer#max_epochs"] = 1
    wf.initialize()
    cached = wf.parser.get_parsed_content("validate#dataset")
    expected = [json.loads(datalist.read_text())["validation"][i]["label"] for i in range(len(cached))]
    assert [int(c["label"].item()) for c in cached] == expected  # label image -> class
    start = time.time()
    wf.run()
    wf.finalize()
    assert os.path.getmtime(models / "model.pt") >= start


def test_dabnet_label_image_must_be_uniform(tmp_path: Path) -> None:
    from monai_mammo.engines.dabnet import LabelImageToClassd

    mixed = np.ones((4, 4), np.uint8)
    mixed[0, 0] = 2
    Image.fromarray(mixed).save(tmp_path / "mixed.png")
    with pytest.raises(ValueError, match=r"mixed\.png.*found values \[1, 2\]"):
        LabelImageToClassd()({"label": str(tmp_path / "mixed.png")})


# ------------------------------------------------------------------------------------- the real app

_APP_SCRIPT = r"""
import json, shutil, sys
from pathlib import Path
import numpy as np, pydicom, yaml
from PIL import Image
from monai.bundle import ConfigParser
from monai_mammo.writers import draw_discs
repo, sample, work = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
app = work / "app"
shutil.copytree(sample, app)
for name in ("asn", "dabnet"):  # the bundles with the smoke sizes (their weights stay in models/)
    dst = app / "model" / name
    shutil.copytree(repo / "bundles" / name, dst, ignore=shutil.ignore_patterns(".cache", "eval", "runs", "*.pt"))
    smoke = yaml.safe_load((dst / "configs" / "smoke.yaml").read_text())
    for cfg in ("train.yaml", "inference.yaml"):
        p = ConfigParser(); p.read_config(str(dst / "configs" / cfg))
        for k, v in smoke.items():
            if k not in ("ckpt_dir", "output_dir", "eval_phantom") and (cfg == "train.yaml" or k.split("#")[0] in p.config):
                p[k] = v
        if cfg == "train.yaml":
            p["val_interval"] = 5  # a train request's max_epochs 1 is shorter than it
        p.export_config_file(p.config, str(dst / "configs" / cfg), fmt="yaml")
asn = work / "studies_asn"; (asn / "labels" / "final").mkdir(parents=True)
d = json.load(open(work / "phantoms" / "datalist.json"))
for item in d["training"] + d["validation"]:
    src = work / "phantoms" / item["image"]; shutil.copy(src, asn / src.name)
    ds = pydicom.dcmread(src); lab = np.zeros((int(ds.Rows), int(ds.Columns)), np.uint8)
    draw_discs(lab, item["points"], 2.0, 1); Image.fromarray(lab).save(asn / "labels" / "final" / (src.stem + ".png"))
rois = work / "studies_roi"; (rois / "labels" / "final").mkdir(parents=True)
r = json.load(open(work / "rois" / "datalist.json"))
for item in r["training"] + r["validation"] + r["test"]:
    src = work / "rois" / item["image"]; shutil.copy(src, rois / src.name)
    if item not in r["test"]:
        size = Image.open(src).size
        Image.fromarray(np.full(size[::-1], 1 + int(item["label"]), np.uint8)).save(rois / "labels" / "final" / src.name)
print(app)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_real_monai_label_server(tmp_path: Path) -> None:
    """MONAI Label 0.8.5 (its own environment: MONAI_LABEL_PYTHON, else this one) on 127.0.0.1 with
    both bundles (smoke sizes, smoke-trained): infer (json, no model_filename), a missing spacing,
    train with max_epochs 1 (< val_interval 5) and infer again with the new weights. Phantom
    DICOMs with µC label images for the ASN, ROI PNGs with 1 / 2 label images for DAB-Net, one
    server per datastore. About 3 minutes on 2 CPU cores."""
    import urllib.error
    import urllib.parse
    import urllib.request

    python = os.environ.get("MONAI_LABEL_PYTHON", sys.executable)
    check = subprocess.run([python, "-c", "import monailabel, sys; print(sys.prefix)"], capture_output=True, text=True)
    if check.returncode != 0:
        pytest.skip("MONAI Label is not importable (set MONAI_LABEL_PYTHON to its environment's python)")
    sample = Path(check.stdout.strip()) / "monailabel" / "sample-apps" / "monaibundle"  # where pip puts them
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    for kind, extra in (("mammogram", ["-O", "image_size=[256,208]", "-O", "spacing_mm=0.14", "-O", "p_calc_cluster=1.0"]),
                        ("roi", ["-O", "size=32", "-O", "n_masses=8", "-O", "n_glands=8"])):
        out = tmp_path / ("phantoms" if kind == "mammogram" else "rois")
        subprocess.run([python, "-m", "monai_mammo.cli", "synth", kind, "--out", str(out), "--n", "4" if kind == "mammogram" else "20",
                        *extra], check=True, env=env, capture_output=True)
    app = Path(subprocess.run([python, "-c", _APP_SCRIPT, str(REPO), str(sample), str(tmp_path)], check=True, env=env,
                              capture_output=True, text=True).stdout.strip().splitlines()[-1])
    for name in ("asn", "dabnet"):
        bundle = app / "model" / name
        subprocess.run([python, "-m", "monai.bundle", "run", "training", "--config_file", str(bundle / "configs" / "train.yaml"),
                        "--bundle_root", str(bundle), "--phantom#cache_dir", str(tmp_path / "cache")],
                       check=True, env=env, capture_output=True)
    assert sorted(p.name for p in (app / "model" / "asn" / "models").glob("*.pt")) == ["model.pt"]

    def serve(studies: Path):
        port = _free_port()
        log = open(tmp_path / f"server_{studies.name}.log", "w")
        server = subprocess.Popen(
            [python, "-m", "monailabel.main", "start_server", "--app", str(app), "--studies", str(studies),
             "--conf", "models", "asn,dabnet", "--conf", "zoo_source", "local", "--conf", "sam2", "false",
             "--host", "127.0.0.1", "--port", str(port)],
            env=dict(env, MONAI_LABEL_DATASTORE_FILE_EXT='["*.dcm","*.png"]'), stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        for _ in range(150):
            try:
                urllib.request.urlopen(base + "/info/", timeout=5)
                break
            except OSError:
                assert server.poll() is None, (tmp_path / f"server_{studies.name}.log").read_text()[-3000:]
                time.sleep(2)
        return server, base

    def post(url: str, params: dict | None = None, body: dict | None = None) -> tuple[int, dict]:
        if body is not None:
            data, headers = json.dumps(body).encode(), {"Content-Type": "application/json"}
        else:
            data = urllib.parse.urlencode({"params": json.dumps(params or {})}).encode()
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
        try:
            with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers, method="POST"), timeout=900) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")

    server, base = serve(tmp_path / "studies_asn")
    try:
        image = sorted((tmp_path / "studies_asn").glob("*.dcm"))[0].stem
        status, first = post(f"{base}/infer/asn?image={image}&output=json")
        assert status == 200 and {"x", "y", "score", "asn_score", "fpr_score"} <= set(first["findings"][0])
        status, reply = post(f"{base}/infer/asn?image={image}&output=json", {"model_filename": "fpr.pt"})
        assert status == 200 and reply["findings"] == first["findings"]  # not in models/: the app's default
        status, _ = post(f"{base}/train/asn?run_sync=true", body={"max_epochs": 1, "val_split": 0.25, "device": "cpu"})
        assert status == 200
        status, after = post(f"{base}/infer/asn?image={image}&output=json")
        assert status == 200 and after["findings"] != first["findings"]  # new ASN and FPR, no restart
    finally:
        server.terminate()
        server.wait(timeout=60)
    server, base = serve(tmp_path / "studies_roi")
    try:
        status, reply = post(f"{base}/infer/asn?image=roi_00000&output=json")  # a PNG: no spacing
        assert status == 422 and "roi_00000.png" in reply["detail"] and '"spacing"' in reply["detail"]
        status, first = post(f"{base}/infer/dabnet?image=roi_00000&output=json")
        assert status == 200 and first["label"] in ("benign", "malignant") and 0 <= first["malignancy_probability"] <= 1
        status, _ = post(f"{base}/train/dabnet?run_sync=true", body={"max_epochs": 1, "val_split": 0.2, "device": "cpu"})
        assert status == 200
        status, after = post(f"{base}/infer/dabnet?image=roi_00000&output=json")
        assert status == 200 and after["malignancy_probability"] != first["malignancy_probability"]
    finally:
        server.terminate()
        server.wait(timeout=60)
