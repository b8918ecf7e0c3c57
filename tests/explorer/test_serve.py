"""The explorer's JSON API (vaelab/explorer/) through Starlette's test client.

Valid requests give what the model itself gives; every invalid one gets HTTP 4xx with a message
that names the field. The runs are the session's shared ones (conftest.trained_run).
"""

import argparse
import base64
import io
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import vaelab_cli
from PIL import Image
from starlette.testclient import TestClient

from vaelab import explorer
from vaelab.cli.read import add_serve_parser
from vaelab.data.pixels import to_float
from vaelab.errors import CheckpointError, VaelabError
from vaelab.explorer import server
from vaelab.files import write_json
from vaelab.models import build_model, make_config
from vaelab.runs import config_dict, load_model, save_weights


def untrained_run(base, out, latent_dim: int):
    """A run folder holding a fresh conv model of another latent size (for the PCA plane)."""
    config = json.loads((base / "config.json").read_text())
    model = build_model("conv", make_config("conv", (1, 28, 28), 10, latent_dim=latent_dim))
    out.mkdir()
    save_weights(out / "model.safetensors", model, "conv")
    write_json(out / "config.json", {**config, "model_config": config_dict(model)})
    return out


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory, trained_run):
    conv, cvae = trained_run("conv"), trained_run("cvae")
    return [conv, cvae, untrained_run(conv, tmp_path_factory.mktemp("pca") / "latent4", latent_dim=4)]


@pytest.fixture(scope="module")
def client(run_dirs):
    return TestClient(explorer.create_app(explorer.load_runs(run_dirs)))


@pytest.fixture(scope="module")
def models(run_dirs):
    return [load_model(d)[0] for d in run_dirs]


@pytest.fixture(scope="module")
def data(sample):
    return sample


def png(data_url: str) -> np.ndarray:
    assert data_url.startswith("data:image/png;base64,")
    return np.array(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))))


@torch.no_grad()
def expected(model, z, label=None) -> np.ndarray:
    """The model's own image at z, as the uint8 pixels the PNG must hold."""
    y = None if label is None else torch.tensor([label])
    image = torch.sigmoid(model.decode(torch.tensor([z], dtype=torch.float32), y))[0, 0]
    return (image.numpy() * 255).round().astype(np.uint8)


def post(client, endpoint, body):
    response = client.post(f"/api/{endpoint}", json=body)
    assert response.status_code == 200, response.text
    return response.json()


# ---- valid requests ------------------------------------------------------------------------------


def test_info_describes_every_run(client):
    info = client.get("/api/info").json()
    conv, cvae, pca = info["runs"]
    assert [r["index"] for r in info["runs"]] == [0, 1, 2]
    assert (conv["model"], conv["conditional"], conv["projection"], conv["latent_dim"]) == ("conv", False, "none", 2)
    assert cvae["conditional"] and cvae["classes"] == [str(k) for k in range(10)]
    assert pca["projection"] == "pca" and pca["latent_dim"] == 4 and 0 < sum(pca["explained_variance"]) <= 1
    assert conv["image_shape"] == [1, 28, 28] and conv["limit"] >= 10 and conv["points"] == 1000
    (x0, x1), (y0, y1) = conv["view"]
    assert x0 < x1 and y0 < y1 and x1 - x0 == pytest.approx(y1 - y0, abs=1e-3)  # one scale on both axes
    assert info["max_grid"] == explorer.MAX_GRID and info["max_steps"] == explorer.MAX_STEPS


def test_points_are_the_encoder_means_of_the_test_set(client, models, data):
    points = client.get("/api/points", params={"run": 0}).json()
    assert points["source"] == "encoder mean" and points["label"] == data.test_y.tolist()
    with torch.no_grad():
        mu = models[0].encode(to_float(data.test_x), None)[0].numpy()
    np.testing.assert_allclose(np.stack([points["x"], points["y"]], 1), mu, atol=1e-4)


def test_decode_gives_the_decoder_image(client, models):
    answer = post(client, "decode", {"run": 0, "plane": [0.5, -1.25]})
    assert answer["z"] == answer["plane"] == [0.5, -1.25]  # a 2-D latent is its own plane
    assert np.abs(png(answer["image"]).astype(int) - expected(models[0], [0.5, -1.25])).max() <= 1
    assert post(client, "decode", {"run": 0, "z": [0.5, -1.25]})["image"] == answer["image"]
    assert post(client, "decode", {"plane": [-2, 2]})["image"] != answer["image"]


def test_cvae_label_changes_the_image(client, models):
    three = post(client, "decode", {"run": 1, "plane": [0, 0], "label": 3})
    seven = post(client, "decode", {"run": 1, "plane": [0, 0], "label": 7})
    assert three["image"] != seven["image"]
    assert np.abs(png(seven["image"]).astype(int) - expected(models[1], [0, 0], 7)).max() <= 1


def test_encode_gives_the_encoder_mean_and_its_reconstruction(client, models, data):
    x = to_float(data.test_x[:1])
    for run, label in ((0, None), (1, int(data.test_y[0]))):
        body = {"run": run, "image": x[0].tolist(), **({} if label is None else {"label": label})}
        answer = post(client, "encode", body)
        with torch.no_grad():
            mu = models[run].encode(x, None if label is None else torch.tensor([label]))[0][0]
        np.testing.assert_allclose(answer["z"], mu.numpy(), atol=1e-4)
        assert np.abs(png(answer["image"]).astype(int) - expected(models[run], mu.tolist(), label)).max() <= 1


def test_interpolation_is_a_straight_line_in_z(client, models):
    answer = post(client, "interpolate", {"run": 0, "start": {"plane": [-1, -1]}, "end": {"z": [2, 0.5]}, "steps": 7})
    assert len(answer["images"]) == 7
    np.testing.assert_allclose(answer["plane"], np.linspace([-1, -1], [2, 0.5], 7), atol=1e-5)
    assert np.abs(png(answer["images"][-1]).astype(int) - expected(models[0], [2, 0.5])).max() <= 1


def test_grid_tiles_the_range_top_row_first(client, models):
    answer = post(client, "grid", {"run": 1, "n": 4, "x_range": [-2, 1], "y_range": [-1, 3], "label": 5})
    image = png(answer["image"])
    assert image.shape == (4 * 28, 4 * 28)
    assert answer["xs"] == [-2, -1, 0, 1] and answer["ys"][0] == 3 and answer["ys"][-1] == -1
    assert np.abs(image[:28, :28].astype(int) - expected(models[1], [-2, 3], 5)).max() <= 1
    assert np.abs(image[-28:, -28:].astype(int) - expected(models[1], [1, -1], 5)).max() <= 1


def test_a_larger_latent_is_decoded_through_its_principal_plane(client, run_dirs):
    run = explorer.load_runs([run_dirs[2]])[0]
    answer = post(client, "decode", {"run": 2, "plane": [0.3, -0.2]})
    assert len(answer["z"]) == 4
    np.testing.assert_allclose(answer["z"], run.plane.latent([[0.3, -0.2]])[0], atol=1e-5)
    np.testing.assert_allclose(answer["plane"], [0.3, -0.2], atol=1e-4)  # the plane maps back onto itself
    z = post(client, "decode", {"run": 2, "z": [0.1, 0.2, 0.3, 0.4]})
    np.testing.assert_allclose(z["plane"], run.plane.coords([[0.1, 0.2, 0.3, 0.4]])[0], atol=1e-4)
    assert len(client.get("/api/points?run=2").json()["x"]) == 1000


def test_page_and_its_files_make_no_outside_requests(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for path in ("/", "/explorer.js", "/explorer.css"):
        text = client.get(path).text
        assert "http://" not in text and "https://" not in text, path
    assert client.get("/explorer.js").headers["content-type"].startswith("text/javascript")
    for path in ("/static/explorer.js", "/../vaelab/explorer/app.py", "/api/nothing", "/config.json"):
        assert client.get(path).status_code == 404, path


# ---- invalid requests: 4xx and a message that names the field ---------------------------------------

IMAGE = np.zeros((1, 28, 28)).tolist()
BAD = [
    ("decode", {"plane": [0.5]}, "plane"),
    ("decode", {"plane": [0, "1"]}, "plane"),
    ("decode", {"plane": [0, 99]}, "plane"),
    ("decode", {"z": [0, 0, 0]}, "z"),
    ("decode", {"z": [0, 0], "plane": [0, 0]}, "z"),
    ("decode", {}, "z"),
    ("decode", {"run": 3, "plane": [0, 0]}, "run"),
    ("decode", {"run": -1, "plane": [0, 0]}, "run"),
    ("decode", {"run": "../../etc", "plane": [0, 0]}, "run"),
    ("decode", {"run": True, "plane": [0, 0]}, "run"),
    ("decode", {"plane": [0, 0], "label": 3}, "label"),  # conv is not conditional
    ("decode", {"run": 1, "plane": [0, 0]}, "label"),  # cvae needs one
    ("decode", {"run": 1, "plane": [0, 0], "label": 10}, "label"),
    ("decode", {"run": 1, "plane": [0, 0], "label": 2.0}, "label"),
    ("decode", {"plane": [0, 0], "lable": 3}, "lable"),
    ("decode", [0, 0], "body"),
    ("encode", {"image": IMAGE[0]}, "image"),
    ("encode", {"image": [[[0.0] * 28] * 27]}, "image"),
    ("encode", {"image": [[[0.0] * 28] * 27 + [[0.0] * 27]]}, "image"),  # ragged
    ("encode", {"image": [[[1.5] * 28] * 28]}, "image"),
    ("encode", {"image": [[[-0.1] * 28] * 28]}, "image"),
    ("encode", {"image": [[["a"] * 28] * 28]}, "image"),
    ("encode", {"run": 1, "image": IMAGE}, "label"),
    ("interpolate", {"start": {"plane": [0, 0]}, "end": {"plane": [1, 1]}, "steps": 1}, "steps"),
    ("interpolate", {"start": {"plane": [0, 0]}, "end": {"plane": [1, 1]}, "steps": 1000}, "steps"),
    ("interpolate", {"start": {"plane": [0, 0]}, "end": {"plane": [1, 11]}}, "end.plane"),
    ("interpolate", {"start": {"zz": [0, 0]}, "end": {"plane": [1, 1]}}, "start.zz"),
    ("interpolate", {"start": [0, 0], "end": {"plane": [1, 1]}}, "start"),
    ("interpolate", {"end": {"plane": [1, 1]}}, "start"),
    ("grid", {"n": 1000}, "n"),
    ("grid", {"n": 1}, "n"),
    ("grid", {"x_range": [1, -1]}, "x_range"),
    ("grid", {"y_range": [0, 50]}, "y_range"),
    ("grid", {"y_range": [0, 1, 2]}, "y_range"),
]


@pytest.mark.parametrize("endpoint,body,field", BAD, ids=[f"{e}-{f}-{i}" for i, (e, _, f) in enumerate(BAD)])
def test_a_bad_request_gets_422_naming_the_field(client, endpoint, body, field):
    response = client.post(f"/api/{endpoint}", json=body)
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["field"] == field and answer["detail"].startswith(f"{field}: ")


@pytest.mark.parametrize("raw", [b'{"plane": [NaN, 0]}', b'{"plane": [0, -Infinity]}', b'{"plane": [0, 1e999]}'])
def test_nan_and_infinity_are_refused(client, raw):
    response = client.post("/api/decode", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 422 and response.json()["field"] == "plane"
    assert "finite" in response.json()["detail"]


def test_broken_json_and_a_huge_body_are_refused(client):
    response = client.post("/api/decode", content=b'{"plane": [0,', headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["field"] == "body"
    response = client.post("/api/encode", content=b"[" + b"0," * server.MAX_BODY + b"0]")
    assert response.status_code == 413 and "body" in response.json()["detail"]


@pytest.mark.parametrize(
    "query", ["run=5", "run=-1", "run=../../x", "run=1e3", "run=%D9%A3", "other=1", "run=" + "9" * 5000]
)
def test_points_query_is_checked(client, query):
    response = client.get(f"/api/points?{query}")
    assert response.status_code == 422
    assert response.json()["field"] == query.split("=")[0]


# ---- start-up and the command ------------------------------------------------------------------------


def test_a_run_folder_with_missing_weights_is_a_clear_error(run_dirs, tmp_path):
    (tmp_path / "config.json").write_text((run_dirs[0] / "config.json").read_text())
    with pytest.raises(CheckpointError, match="model.safetensors is missing"):
        explorer.load_runs([tmp_path])
    parser = argparse.ArgumentParser()
    add_serve_parser(parser.add_subparsers())
    args = parser.parse_args(["serve", str(tmp_path / "nowhere"), "--port", "0"])
    with pytest.raises(VaelabError, match="does not exist"):
        args.handler(args)


def test_a_busy_port_is_a_clear_error(run_dirs):
    with server.listen("127.0.0.1", 0) as busy:
        with pytest.raises(VaelabError, match="pick another --port"):
            explorer.serve([run_dirs[0]], "127.0.0.1", busy.getsockname()[1])


@pytest.mark.slow  # a new process that starts a server
def test_serve_prints_its_address_and_answers(run_dirs):
    code = "import sys; from vaelab.explorer import serve; serve(sys.argv[1:], port=0)"
    process = subprocess.Popen([sys.executable, "-c", code, str(run_dirs[0])], stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("vaelab explorer: http://127.0.0.1:"), line
        import urllib.request

        with urllib.request.urlopen(line.split()[2] + "api/info", timeout=30) as response:
            assert json.loads(response.read())["runs"][0]["model"] == "conv"
    finally:
        process.terminate()
        process.wait(30)


def test_the_serve_command_exits_2_on_a_bad_run_folder_and_gives_back_torchs_threads(tmp_path):
    """The server decodes on one thread; a notebook that served and stopped trains on all of them again."""
    threads = torch.get_num_threads()
    result = vaelab_cli("serve", tmp_path / "nowhere")
    assert result.returncode == 2 and "does not exist" in result.stderr
    assert torch.get_num_threads() == threads


def test_import_vaelab_and_the_cli_leave_the_web_stack_alone():
    code = (
        "import sys, vaelab, vaelab.cli, vaelab.explorer; "
        "print(sorted(m for m in ('starlette', 'uvicorn', 'httpx') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr
