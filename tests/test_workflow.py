"""selector.workflow: what the commands do, callable from Python with plain arguments, with the same
summary text the command line prints (selector.summary)."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from selector import workflow
from selector.cli import main
from selector.embeddings_io import EmbeddingsError
from selector.summary import summary_text


@pytest.fixture
def emb(tmp_path):
    x = np.random.default_rng(0).normal(size=(30, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    np.save(tmp_path / "e.npy", x)
    (tmp_path / "ids.txt").write_text("".join(f"img_{i}.png\n" for i in range(30)), encoding="utf-8")
    return tmp_path / "e.npy", tmp_path / "ids.txt"


def test_a_python_caller_gets_the_selection_and_the_summary_of_the_command_line(emb, tmp_path):
    path, ids = emb
    done = tmp_path / "done.txt"
    done.write_text("img_0.png\nimg_1.png\n", encoding="utf-8")
    labels = workflow.LabelFiles(labeled=(done,))
    result, rows = workflow.select_from_embeddings(path, 5, "kcenter", ids=ids, labels=labels, seed=0)
    files = workflow.write_selection(result, tmp_path / "a.csv")
    assert [k for k, _ in rows] == ["labeled", "embeddings", "strategy"]
    assert dict(rows)["labeled"] == "2 images already labeled excluded"
    assert not {"img_0.png", "img_1.png"} & set(result.paths) and files == [tmp_path / "a.csv"]

    r = CliRunner().invoke(main, ["select", "-b", "5", "--embeddings", str(path), "--ids", str(ids), "-s", "kcenter",
                                  "--labeled", str(done), "-o", str(tmp_path / "b.csv")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    printed = {ln.split(":", 1)[0]: ln.split(":", 1)[1].strip() for ln in r.output.splitlines()}
    assert printed["labeled"] == dict(rows)["labeled"] and printed["embeddings"] == dict(rows)["embeddings"]
    assert printed["strategy"].startswith("kcenter (")


def test_summary_text_aligns_the_values():
    assert summary_text([("pool", "60 images"), ("per group", "0:1")]) == "pool:      60 images\nper group: 0:1"


def test_ids_files_are_checked(tmp_path):
    f = tmp_path / "ids.txt"
    f.write_text("a\nb\na\n", encoding="utf-8")
    with pytest.raises(EmbeddingsError, match="has 3 lines for 2 embeddings"):
        workflow.read_ids(f, 2)
    with pytest.raises(EmbeddingsError, match="'a' is on lines 1 and 3"):
        workflow.read_ids(f, 3)
    with pytest.raises(EmbeddingsError, match="cannot read ids"):
        workflow.read_ids(tmp_path / "none.txt", 3)


def test_outputs_are_refused_before_any_work(tmp_path):
    from selector.atomic import OutputExistsError

    (tmp_path / "x.csv").write_text("keep")
    with pytest.raises(OutputExistsError, match="exists; pass --force"):
        workflow.check_output(tmp_path / "x.csv")
    workflow.check_output(tmp_path / "x.csv", force=True)
    with pytest.raises(workflow.OutputError, match="does not exist"):
        workflow.check_output(tmp_path / "missing" / "x.csv")


def test_a_step_names_the_input_of_an_unexpected_exception():
    with pytest.raises(KeyError) as info:
        with workflow.step("labels file a.json"):
            with workflow.step("inner part"):
                raise KeyError(0)
    assert workflow.failed_step(info.value) == "inner part"  # the innermost step
    assert workflow.failed_step(ValueError()) is None


def test_photos_are_embedded_a_chunk_at_a_time_and_a_file_that_fails_to_decode_is_dropped(tmp_path):
    """A folder of photos is never decoded whole (the pool holds no images after fit); a file that reads but
    does not decode is found while embedding, dropped and counted as skipped, and the labeled files still
    exclude the right images (the plan follows the pool)."""
    from selector import Selector
    from tests.conftest import write_photos

    folder = write_photos(tmp_path / "photos", n=12, size=70)
    (folder / "003.jpg").write_bytes((folder / "003.jpg").read_bytes()[:120])
    done = tmp_path / "done.txt"
    done.write_text("005.jpg\n010.jpg\n", encoding="utf-8")
    sel = Selector(backbone="resnet-small", backbone_mode="frozen", strategy="kcenter", cache_dir=tmp_path / "c")
    result, rows = workflow.select_from_pool(sel, folder, 9, labels=workflow.LabelFiles(labeled=(done,)))
    assert sel.encoder_plan_.needs_images  # a frozen backbone with random weights embeds the decoded pool
    assert "003.jpg" not in sel.pool_.ids and ("003.jpg" in [p for p, _ in sel.pool_.skipped])
    assert dict(rows)["pool"].startswith("11 images in") and "1 unreadable files skipped" in dict(rows)["pool"]
    assert dict(rows)["labeled"] == "2 images already labeled excluded"
    assert len(result) == 9 and not {"003.jpg", "005.jpg", "010.jpg"} & set(result.paths)


def test_the_default_streams_photos_at_224_px(tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch")
    from selector import Selector
    from tests.conftest import write_photos

    folder = write_photos(tmp_path / "photos", n=7, size=240)
    (folder / "006.jpg").write_bytes((folder / "006.jpg").read_bytes()[:300])  # found only when decoded
    sel = Selector(cache_dir=tmp_path / "c").fit(folder)
    plan = sel.encoder_plan_
    assert (plan.backbone, plan.encoder.input_size, plan.read_side, plan.pixel_view) == (
        "efficientnet-lite0", 224, 224, False)
    assert plan.streams and sel.pool_.images is None  # never decoded whole
    assert sel.embeddings_.shape == (6, 1280) and [p for p, _ in sel.pool_.skipped] == ["006.jpg"]
    r = CliRunner().invoke(main, ["select", "-b", "2", "-p", str(folder), "-o", str(tmp_path / "s.csv"),
                                  "--cache-dir", str(tmp_path / "c")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "224 px input from images decoded at 224 px" in r.output and "colour images" in r.output
    assert "6 images embedded" not in r.output  # the API's fit filled the cache
