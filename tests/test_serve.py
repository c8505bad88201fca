"""The search service over HTTP: FastAPI's TestClient against a real run, index and model.

A tiny run is trained on the glyph fixture (20 steps) and indexed with faiss, once for
the module; every test sends real requests through the framework to the real app.
"""

import io
import itertools
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("faiss")

from fastapi.testclient import TestClient

from sampling_matters.cli import main
from sampling_matters.index import QueryEmbedder, load
from sampling_matters.serve import create_app
from sampling_matters.serve.queries import MAX_PIXELS

MAX_K = 20
MAX_UPLOAD = 64 * 1024  # small, so an oversize upload is cheap to send


def train_and_index(glyph_folder, tiny_settings, out):
    """A 20-step run on the glyph folder and a saved index of its test split; the folder."""
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in tiny_settings.items() if k != "data"]
    spec, run, folder = f"folder:{glyph_folder}", out / "run", out / "index"
    assert main(["train", "--data", spec, *flags, "--steps", "20", "--out", str(run)]) == 0
    index = ["index", str(run), "--data", spec, "--split", "test", "--out", str(folder)]
    assert main([*index, "--quiet"]) == 0
    return folder


@pytest.fixture(scope="module")
def index_folder(glyph_folder, tiny_settings, tmp_path_factory):
    return train_and_index(glyph_folder, tiny_settings, tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def served(index_folder):
    """(client, index, embedder) of the glyph run's test split."""
    index = load(index_folder)
    embedder = QueryEmbedder.for_index(index)
    app = create_app(index, embedder, max_upload_bytes=MAX_UPLOAD, max_k=MAX_K)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, index, embedder


def png_bytes(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def upload(client, data, k=5, name="query.png", kind="image/png"):
    return client.post("/api/search", files={"image": (name, data, kind)}, data={"k": str(k)})


def item_png(index, position):
    return open(index.items[position], "rb").read()  # the glyph fixture's files are PNGs


def assert_error(response, status, *words):
    """A JSON error with ``status`` whose one-line message holds ``words``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and "Traceback" not in detail
    for word in words:
        assert word in detail, detail
    return detail


def test_search_by_upload_matches_the_index_searched_directly(served):
    client, index, embedder = served
    data = item_png(index, 3)
    response = upload(client, data, k=5)
    assert response.status_code == 200, response.text
    neighbours = response.json()["neighbours"]
    assert list(response.json()) == ["neighbours"]
    assert [list(n) for n in neighbours] == [["id", "label", "distance", "image_url"]] * 5
    query = embedder.embed_images([Image.open(io.BytesIO(data))])  # (1, D)
    distances, ids = index.search(query, 5)
    assert [n["id"] for n in neighbours] == ids[0].tolist()
    assert [n["distance"] for n in neighbours] == pytest.approx(distances[0].tolist(), abs=1e-5)
    labels = dict(zip(index.ids.tolist(), index.labels.tolist()))
    assert [n["label"] for n in neighbours] == [labels[n["id"]] for n in neighbours]
    at_zero = [n["id"] for n in neighbours if n["distance"] < 1e-3]  # identical renderings
    assert int(index.ids[3]) in at_zero  # the item itself: an upload is no id
    assert all(a["distance"] <= b["distance"] for a, b in itertools.pairwise(neighbours))
    assert all(n["image_url"] == f"/api/items/{n['id']}/image" for n in neighbours)


def test_search_by_id_leaves_the_item_out(served):
    client, index, _ = served
    item = int(index.ids[7])
    response = client.post("/api/search", json={"id": item, "k": 6})
    assert response.status_code == 200, response.text
    neighbours = response.json()["neighbours"]
    assert len(neighbours) == 6 and item not in [n["id"] for n in neighbours]
    vectors = index.vectors(index.ids)  # (N, D)
    exact = torch.cdist(vectors[item : item + 1], vectors)[0]  # (N,) brute force
    exact[item] = float("inf")
    # the index's distances are √(2 − 2·inner product) in float32: near 0 they are off by
    # up to √(float32's eps) ≈ 3e-4 from cdist's (the tiny model puts items that close)
    assert [n["distance"] for n in neighbours] == pytest.approx(
        exact.sort().values[:6].tolist(), abs=5e-4
    )
    for n in neighbours:  # ties may come in any order; each distance is the item's own
        assert n["distance"] == pytest.approx(float(exact[n["id"]]), abs=5e-4)
    by_upload = upload(client, item_png(index, 7), k=7).json()["neighbours"]
    assert item in [n["id"] for n in by_upload if n["distance"] < 1e-3]  # the item kept


def test_search_without_k_returns_ten(served):
    client, index, _ = served
    response = client.post("/api/search", json={"id": int(index.ids[0])})
    assert response.status_code == 200 and len(response.json()["neighbours"]) == 10


@pytest.mark.parametrize("k", [0, -1, MAX_K + 1, 10**9])
def test_k_out_of_range_is_422(served, k):
    client, index, _ = served
    assert_error(client.post("/api/search", json={"id": int(index.ids[0]), "k": k}), 422, "k")
    assert_error(upload(client, item_png(index, 0), k=k), 422, f"[1, {MAX_K}]", str(k))


@pytest.mark.parametrize("k", ["three", "2.5", True, None, [3]])
def test_k_that_is_no_integer_is_422(served, k):
    client, index, _ = served
    response = client.post("/api/search", json={"id": int(index.ids[0]), "k": k})
    assert_error(response, 422, "'k' must be an integer")


def test_k_above_the_index_size_is_422(glyph_folder, tiny_settings, tmp_path, served):
    _, index, embedder = served
    app = create_app(index, embedder, max_k=10**6)  # capped at the index's size - 1
    with TestClient(app) as client:
        assert client.get("/healthz").json()["max_k"] == len(index) - 1
        response = client.post("/api/search", json={"id": int(index.ids[0]), "k": len(index)})
        assert_error(response, 422, f"[1, {len(index) - 1}]")
        response = client.post("/api/search", json={"id": int(index.ids[0]), "k": len(index) - 1})
        assert len(response.json()["neighbours"]) == len(index) - 1


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"just some text, no image at all", ["no image in a format", "PNG, JPEG"]),
        (b"", ["empty"]),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, ["image"]),
    ],
    ids=["text", "empty", "png-header-only"],
)
def test_a_non_image_upload_is_400_with_a_message(served, data, words):
    client, _, _ = served
    assert_error(upload(client, data, name="notes.png"), 400, *words)


@pytest.mark.parametrize("format", ["PNG", "JPEG"])
def test_a_truncated_upload_is_400_with_a_message(served, format):
    client, _, _ = served
    noise = torch.randint(0, 256, (64, 64), generator=torch.Generator().manual_seed(0))
    image = Image.fromarray(noise.to(torch.uint8).numpy())
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    whole = buffer.getvalue()
    assert upload(client, whole).status_code == 200  # the whole file is fine
    assert_error(upload(client, whole[: len(whole) // 2]), 400, "truncated")


def test_an_unsupported_image_format_is_400(served):
    client, _, _ = served
    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, format="TIFF")
    assert_error(upload(client, buffer.getvalue(), name="a.tif"), 400, "PNG, JPEG")


def test_an_oversize_upload_is_413_before_it_is_read(served):
    client, _, _ = served
    big = png_bytes(Image.new("L", (8, 8))) + b"\x00" * (MAX_UPLOAD + 1)
    assert_error(upload(client, big), 413, f"the limit is {MAX_UPLOAD} bytes")

    def chunks():  # no Content-Length: the cap holds while the body streams in
        yield b"--x\r\nContent-Disposition: form-data; name=image; filename=a.png\r\n\r\n"
        for _ in range(4 * MAX_UPLOAD // 1024):
            yield b"\x00" * 1024

    response = client.post(
        "/api/search", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert_error(response, 413, "more than")


def test_an_image_of_too_many_pixels_is_413(served):
    client, _, _ = served
    side = int(MAX_PIXELS**0.5) + 1
    buffer = io.BytesIO()
    Image.new("1", (side, side)).save(buffer, format="PNG", optimize=True)  # a few KiB
    assert len(buffer.getvalue()) < MAX_UPLOAD
    assert_error(upload(client, buffer.getvalue()), 413, "pixels")


@pytest.mark.parametrize(
    ("request_kwargs", "status", "words"),
    [
        ({"content": b"id=3", "headers": {"content-type": "text/plain"}}, 415, ["multipart"]),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, ["JSON"]),
        ({"json": [1, 2]}, 422, ["JSON object"]),
        ({"json": {"k": 3}}, 422, ["'id' is missing"]),
        ({"json": {"id": "3"}}, 422, ["'id' must be an integer"]),
        ({"json": {"id": 1, "path": "/etc/passwd"}}, 422, ["unknown fields ['path']"]),
        ({"data": {"k": "3"}, "files": {"other": ("a", b"x")}}, 422, ["unknown form fields"]),
        ({"data": {"k": "3"}}, 415, ["multipart"]),  # urlencoded
        (
            {
                "content": b'--x\r\nContent-Disposition: form-data; name="image"\r\n\r\n'
                b"text\r\n--x--\r\n",
                "headers": {"content-type": "multipart/form-data; boundary=x"},
            },
            422,
            ["no file"],
        ),
        ({"content": b"garbage", "headers": {"content-type": "multipart/form-data"}}, 400, []),
    ],
    ids=[
        "text",
        "bad-json",
        "json-list",
        "no-id",
        "id-text",
        "extra-field",
        "form-field",
        "urlencoded",
        "no-file",
        "no-boundary",
    ],
)
def test_malformed_requests_are_4xx_with_a_message(served, request_kwargs, status, words):
    client, _, _ = served
    assert_error(client.post("/api/search", **request_kwargs), status, *words)


def test_unknown_id_is_404(served):
    client, index, _ = served
    missing = int(index.ids.max()) + 1
    assert_error(client.post("/api/search", json={"id": missing, "k": 3}), 404, str(missing))
    assert_error(client.get(f"/api/items/{missing}"), 404, "no item has id")
    assert_error(client.get(f"/api/items/{missing}/image"), 404, "no item has id")
    assert_error(client.get("/api/items/-1/image"), 404)


def test_item_metadata_and_image(served):
    client, index, _ = served
    item = int(index.ids[5])
    meta = client.get(f"/api/items/{item}").json()
    assert meta == {
        "id": item,
        "label": int(index.labels[5]),
        "item": index.items[5],
        "image_url": f"/api/items/{item}/image",
    }
    response = client.get(meta["image_url"])
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    served_image = Image.open(io.BytesIO(response.content))
    assert served_image.tobytes() == Image.open(index.items[5]).convert("L").tobytes()
    random_item = client.get("/api/items/random").json()
    assert random_item["id"] in index.ids.tolist()


def test_an_item_whose_file_is_gone_is_404_and_still_searchable(index_folder, tmp_path):
    gallery = tmp_path / "gallery"
    shutil.copytree(Path(load(index_folder).items[0]).parents[1], gallery)
    run = load(index_folder).meta["run"]
    flags = ["--data", f"folder:{gallery}", "--split", "test", "--quiet"]
    assert main(["index", run, *flags, "--out", str(tmp_path / "index")]) == 0
    index = load(tmp_path / "index")
    Path(index.items[2]).unlink()
    with TestClient(create_app(index, QueryEmbedder.for_index(index))) as client:
        assert_error(client.get("/api/items/2/image"), 404, "the image of item 2 cannot be read")
        assert client.get("/api/items/3/image").status_code == 200
        response = client.post("/api/search", json={"id": 2, "k": 3})  # by its stored vector
        assert response.status_code == 200 and len(response.json()["neighbours"]) == 3


@pytest.mark.parametrize(
    "path",
    [
        "/api/items/..%2F..%2Fetc%2Fpasswd/image",
        "/api/items/%2Fetc%2Fpasswd/image",
        "/api/items/1.5/image",
        "/api/items/0x1/image",
        "/static/..%2F..%2F..%2Fcli%2Fserve.py",
        "/static/../service.py",
    ],
)
def test_images_are_served_for_ids_only_never_for_a_path(served, path):
    client, _, _ = served
    response = client.get(path)
    assert response.status_code in (404, 422), (path, response.status_code)
    assert response.headers["content-type"].startswith("application/json")
    assert b"root:" not in response.content and b"def " not in response.content


def test_healthz_names_the_index_and_the_model(served):
    client, index, embedder = served
    health = client.get("/healthz").json()
    assert health["status"] == "ok"
    assert (health["size"], health["dim"], health["max_k"]) == (len(index), index.dim, MAX_K)
    assert health["model"]["name"] == "small-cnn"
    assert health["model"]["checkpoint_sha256"] == embedder.checkpoint_sha256
    assert health["max_upload_bytes"] == MAX_UPLOAD


def test_the_page_and_its_files_are_served(served):
    client, _, _ = served
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for asset, kind in (("static/app.js", "javascript"), ("static/style.css", "text/css")):
        assert f'"{asset}"' in page.text
        response = client.get(f"/{asset}")
        assert response.status_code == 200 and kind in response.headers["content-type"]
    assert 'id="file"' in page.text and 'id="random"' in page.text


def test_concurrent_requests_answer_as_sequential_ones(served):
    client, index, _ = served
    ids = index.ids.tolist()[:12]
    queries = [("id", i) for i in ids] + [("upload", p) for p in range(8)]

    def ask(query):
        kind, value = query
        if kind == "id":
            response = client.post("/api/search", json={"id": value, "k": 7})
        else:
            response = upload(client, item_png(index, value), k=7)
        assert response.status_code == 200, response.text
        return json.dumps(response.json(), sort_keys=True)

    sequential = [ask(q) for q in queries]
    with ThreadPoolExecutor(8) as pool:
        concurrent = list(pool.map(ask, queries * 3))  # 8 in flight at a time
    assert concurrent == sequential * 3


@pytest.mark.parametrize(("dim", "reason"), [(8, "16-d vectors"), (16, "sha256")])
def test_the_app_refuses_a_model_that_does_not_fit_the_index(
    served, tmp_path, glyph_folder, dim, reason
):
    _, index, _ = served
    other = tmp_path / "other"
    assert main(["train", "--data", f"folder:{glyph_folder}", "--model", "small-cnn",
                 "--embedding-dim", str(dim), "--classes-per-batch", "3", "--samples-per-class",
                 "3", "--val-fraction", "0", "--steps", "1", "--out", str(other)]) == 0  # fmt: skip
    with pytest.raises(ValueError, match=reason):
        create_app(index, QueryEmbedder(other))


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"max_k": 0}, "max_k must be >= 1"), ({"max_upload_bytes": 0}, "max_upload_bytes")],
)
def test_create_app_checks_its_limits(served, settings, message):
    _, index, embedder = served
    with pytest.raises(ValueError, match=message):
        create_app(index, embedder, **settings)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--port", "70000"], "--port must be in [0, 65535], got 70000"),
        (["--max-upload-mb", "0"], "--max-upload-mb must be > 0"),
        (["--run", "{tmp}"], "has no best.pt"),
    ],
)
def test_the_serve_command_refuses_bad_settings_in_one_line(
    index_folder, tmp_path, capsys, flags, message
):
    argv = ["serve", str(index_folder), *(f.format(tmp=tmp_path) for f in flags)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sampling-matters serve: error: ") and "\n" not in err
    assert message in err


BLOCK_FASTAPI = """
import importlib.abc, sys

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "fastapi":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, Blocker())
from sampling_matters.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_the_command_line_without_fastapi_names_the_extra(index_folder):
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_FASTAPI, "serve", str(index_folder)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SAMPLING_MATTERS_DEBUG": ""},
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "sampling-matters serve: error: serve needs fastapi: pip install 'sampling-matters[serve]'"
    ]
