"""The CLI reaches every export option of the API: --image-root (for --embeddings), --document-root,
--url-prefix, --format, and the CVAT dataset .zip (read back by selector's reader always, by datumaro
when it is installed)."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
import zipfile
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from selector.cli import main
from selector.formats import read_labels
from tests.formats.conftest import served_file

NAMES = [f"cls {i % 3}/img {i:02d}.png" for i in range(30)]


@pytest.fixture
def images(tmp_path):
    """30 small PNGs (distinct sizes) under tmp/data/pool, and embeddings + ids of them."""
    root = tmp_path / "data" / "pool"
    for i, name in enumerate(NAMES):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8 + i, 6 + i % 5), (i * 8, 0, 0)).save(root / name)
    rng = np.random.default_rng(1)
    e = rng.normal(size=(30, 8)).astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    np.savez(tmp_path / "emb.npz", embeddings=e, ids=np.array(NAMES))
    return tmp_path, root


def run(tmp, *args, code=0):
    r = CliRunner().invoke(main, [str(a) for a in ["select", "--embeddings", tmp / "emb.npz", "-b", 6,
                                                   "-s", "kcenter", *args]])
    assert r.exit_code == code, r.output
    return r


def test_image_root_and_document_root_make_urls_label_studio_serves(images):
    tmp, root = images
    run(tmp, "--image-root", root, "-o", tmp / "t.json")
    tasks = json.loads((tmp / "t.json").read_text(encoding="utf-8"))
    for t in tasks:  # default document root: the pool's parent
        assert served_file(t["data"]["image"], root.parent, root) == root / t["data"]["path"]
    run(tmp, "--image-root", root, "--document-root", tmp, "-o", tmp / "d.json")
    for t in json.loads((tmp / "d.json").read_text(encoding="utf-8")):
        assert parse_qs(urlsplit(t["data"]["image"]).query)["d"][0] == "data/pool/" + t["data"]["path"]
        assert served_file(t["data"]["image"], tmp, root) == root / t["data"]["path"]
    r = run(tmp, "--image-root", root, "--document-root", tmp / "elsewhere", "-o", tmp / "x.json", code=1)
    assert "not under document_root" in r.output and not (tmp / "x.json").exists()
    r = run(tmp, "-o", tmp / "y.json", "--image-root", tmp / "missing", code=2)
    assert "does not exist" in r.output
    # --image-root without --embeddings is a usage error
    r = CliRunner().invoke(main, ["select", "-p", str(root), "-b", "2", "--image-root", str(root)])
    assert r.exit_code == 2 and "--image-root" in r.output


def test_url_prefix_static_server_s3_and_absolute_then_read_back(images):
    tmp, root = images
    for prefix in ("http://localhost:8081/", "s3://bucket/pool/"):
        out = tmp / f"p{len(prefix)}.json"
        run(tmp, "--image-root", root, "--url-prefix", prefix, "-o", out)
        tasks = json.loads(out.read_text(encoding="utf-8"))
        assert all(t["data"]["image"].startswith(prefix) for t in tasks)
        assert "cls%200/" in "".join(t["data"]["image"] for t in tasks) or "cls%201/" in "".join(
            t["data"]["image"] for t in tasks)
        # A Label Studio export of these tasks without data.path (made elsewhere) reads back via the prefix
        for t in tasks:
            del t["data"]["path"]
            t["annotations"] = [{"was_cancelled": False, "result": [
                {"type": "choices", "from_name": "choice", "to_name": "image", "value": {"choices": ["a"]}}]}]
        (tmp / "export.json").write_text(json.dumps(tasks), encoding="utf-8")
        chosen = [json.loads(json.dumps(t))["meta"]["path"] for t in tasks]
        assert read_labels(tmp / "export.json", url_prefix=prefix) == {p: "a" for p in chosen}
        r = run(tmp, "--image-root", root, "--labeled", tmp / "export.json", "--url-prefix", prefix,
                "-o", tmp / f"next{len(prefix)}.csv")
        assert "6 images already labeled excluded" in r.output
    run(tmp, "--image-root", root, "--url-prefix", "none", "-o", tmp / "abs.json")
    for t in json.loads((tmp / "abs.json").read_text(encoding="utf-8")):
        assert t["data"]["image"] == str(root.resolve() / t["data"]["path"])


def test_format_overrides_the_suffix(images):
    tmp, root = images
    run(tmp, "--format", "paths", "-o", tmp / "chosen.lst")
    assert len((tmp / "chosen.lst").read_text(encoding="utf-8").splitlines()) == 6
    run(tmp, "--format", "csv", "-o", tmp / "chosen.dat")
    assert (tmp / "chosen.dat").read_text(encoding="utf-8").startswith("rank,path,group,score")
    r = run(tmp, "-o", tmp / "chosen.yaml", code=1)
    assert "cannot tell the export format" in r.output


def test_cvat_xml_and_zip_from_embeddings_round_trip(images):
    tmp, root = images
    run(tmp, "--image-root", root, "-o", tmp / "task.xml", "--class-names", "cat,dog")
    ann = ET.parse(tmp / "task.xml").getroot()
    assert [lab.findtext("name") for lab in ann.iter("label")] == ["cat", "dog"]
    assert not list(ann.iter("tag"))  # class names given: no group tags
    run(tmp, "--image-root", root, "-o", tmp / "task.zip", "--class-names", "cat,dog")
    with zipfile.ZipFile(tmp / "task.zip") as z:
        names = z.namelist()
        xml = ET.fromstring(z.read("annotations.xml"))
        chosen = [img.get("name") for img in xml.iter("image")]
        assert sorted(names) == sorted(["annotations.xml", *("images/" + c for c in chosen)])
        for img in xml.iter("image"):  # sizes match the stored image bytes
            with z.open("images/" + img.get("name")) as f:
                assert Image.open(f).size == (int(img.get("width")), int(img.get("height")))
    # An annotator tags the images in CVAT and exports the dataset: read back by selector's reader.
    truth = {c: ("cat" if i % 2 else "dog") for i, c in enumerate(chosen)}
    for img in xml.iter("image"):
        ET.SubElement(img, "tag", {"label": truth[img.get("name")], "source": "manual"})
    with zipfile.ZipFile(tmp / "done.zip", "w") as z:
        z.writestr("annotations.xml", ET.tostring(xml))
    assert read_labels(tmp / "done.zip") == truth
    # Without class names the groups are the labels, tagged source="auto": never read back as labels.
    run(tmp, "--image-root", root, "-o", tmp / "groups.zip", "-s", "typiclust")  # a strategy with groups
    assert read_labels(tmp / "groups.zip") == {}
    with zipfile.ZipFile(tmp / "groups.zip") as z:
        assert {t.get("source") for t in ET.fromstring(z.read("annotations.xml")).iter("tag")} == {"auto"}


def test_cvat_zip_imports_in_datumaro(images):
    dm = pytest.importorskip("datumaro")
    tmp, root = images
    run(tmp, "--image-root", root, "-o", tmp / "task.zip", "--class-names", "cat,dog")
    with zipfile.ZipFile(tmp / "task.zip") as z:
        z.extractall(tmp / "unzipped")
    ds = dm.Dataset.import_from(str(tmp / "unzipped"), "cvat")
    assert len(ds) == 6
    cats = ds.categories()[dm.AnnotationType.label]
    assert [c.name for c in cats] == ["cat", "dog"]
    for item in ds:
        assert item.media.has_data
