"""selector show --html: one self-contained page (picks, map, summary), read back as text and opened in a real
headless Chromium (Debian's package; skipped with the reason where it is missing, CI installs it)."""
from __future__ import annotations

import contextlib
import csv
import html
import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from selector.cli import main
from selector.report import GROUP_COLORS, ClassCount, class_count, coverage_text, random_coverage, read_summary
from selector.show import ShowError
from selector.supervise import die_with_parent
from tests.conftest import error_line

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(
    not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)),
    reason="needs a real Chromium to open the page (Debian: apt-get install -y chromium; .ci/run installs it)")

#: A file name that is markup: it must reach the page as text.
ODD_NAME = "a&<b>.png"


def show(*args):
    return CliRunner().invoke(main, ["show", *map(str, args)])


@pytest.fixture
def page_inputs(tmp_path):
    """A pool of 14 colourful noise images (24 px, one named like markup), its embeddings (.npz with ids) and
    a selection of 9 of them in 3 estimated groups, interleaved ranks."""
    pool = tmp_path / "pool"
    (pool / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"sub/img{i:02d}.png" for i in range(13)] + [ODD_NAME]
    for n in names:
        Image.fromarray(rng.integers(0, 256, size=(24, 24, 3), dtype=np.uint8)).save(pool / n)
    ids = sorted(names)
    np.savez(tmp_path / "emb.npz", embeddings=rng.normal(size=(len(ids), 5)).astype(np.float32), ids=np.array(ids))
    chosen = [ODD_NAME] + [f"sub/img{i:02d}.png" for i in (0, 2, 4, 6, 8, 10, 11, 12)]
    rows = [{"rank": k + 1, "path": p, "group": (0, 5, 0, 9, 5, 0, 9, 9, 0)[k]} for k, p in enumerate(chosen)]
    with open(tmp_path / "sel.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["rank", "path", "group", "score"])
        w.writerows([r["rank"], r["path"], r["group"], 0.5] for r in rows)
    return tmp_path, pool, rows


def summary_file(path, rows, **classes):
    """A summary as ``selector select --json`` prints it; ``classes`` as issue 29 adds it, when given."""
    d = {"chosen": len(rows), "strategy": "typcover", "estimated_classes": 3, "paths": [r["path"] for r in rows],
         "summary": {"pool": "14 images in pool (RGB, short side 24 px (median))", "encoder": "encoder E",
                     "strategy": "typcover (0.1 s), estimated classes: 3 (range 3-4 over 3 samples of the pool)"}}
    if classes:
        d["classes"] = classes
    path.write_text(json.dumps(d), encoding="utf-8")
    return path


def external_references(page: str) -> list[str]:
    """Every src/href value of the page that is not inline data or a fragment."""
    return [v for v in re.findall(r'\b(?:src|href)="([^"]*)"', page) if not v.startswith(("data:", "#"))]


# ----------------------------------------------------------------------------- what the page knows


def test_class_count_is_read_defensively():
    full = {"classes": {"estimate": 10, "low": 8, "high": 13, "confident": True}}
    assert class_count(full) == ClassCount(10, 8, 13, True, "summary")
    assert class_count({"info": full}) == ClassCount(10, 8, 13, True, "summary")
    # confident only when it says so as a JSON true; odd types count as absent
    assert not class_count({"classes": {"estimate": 10, "confident": "yes"}}).confident
    assert not class_count({"classes": {"estimate": 10, "confident": 1}}).confident
    assert class_count({"classes": {"estimate": True, "low": 9, "high": 3}}) == ClassCount(None, None, None, False,
                                                                                          "summary")
    assert class_count({"classes": {"estimate": "7", "low": 2.0, "high": 4}}).estimate is None
    # today's summary: the estimate and the range its strategy line prints, never confident
    today = {"estimated_classes": 15, "summary": {"strategy": "typcover (8 s), estimated classes: 15 (range 12-15 "
                                                              "over 3 samples of the pool)"}}
    assert class_count(today) == ClassCount(15, 12, 15, False, "summary")
    assert class_count({"estimated_classes": None, "summary": "x"}) == ClassCount()
    # the selection file's facts, after the summary
    facts = {"classes": {"estimate": 4, "confident": True}}
    assert class_count(None, facts) == ClassCount(4, None, None, True, "selection file")
    assert class_count(full, facts).estimate == 10
    assert not class_count().known and "unknown" in class_count().text()
    assert class_count(full).text() == "about 10 (between 8 and 13), confident"


def test_random_coverage_is_the_coupon_collector_expectation():
    assert random_coverage(10, 10) == pytest.approx(10 * (1 - 0.9 ** 10))
    assert random_coverage(1, 5) == 1.0 and random_coverage(7, 0) == 0.0
    assert random_coverage(10, 1000) == pytest.approx(10.0)
    # against a simulation: 4,000 draws of B = 20 picks among K = 15 equally frequent classes
    rng = np.random.default_rng(0)
    sim = np.mean([len(np.unique(rng.integers(0, 15, 20))) for _ in range(4000)])
    assert abs(sim - random_coverage(15, 20)) < 0.1
    with pytest.raises(ValueError):
        random_coverage(0, 3)
    rows = [{"group": g} for g in (0, 1, 1, 2, -1)]
    text = coverage_text(ClassCount(4, confident=True), rows)
    assert f"about {random_coverage(4, 5):.1f} of 4 classes" in text and "span 3 estimated groups" in text
    assert "rough guide" in coverage_text(ClassCount(4), rows) and "unknown" in coverage_text(ClassCount(), rows)


def test_read_summary_refuses_another_selections_summary(tmp_path):
    rows = [{"path": "a.png"}, {"path": "b.png"}]
    summary_file(tmp_path / "s.json", rows)
    assert read_summary(tmp_path / "s.json", rows)["strategy"] == "typcover"
    with pytest.raises(ShowError, match="describes another selection"):
        read_summary(tmp_path / "s.json", rows[::-1])
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ShowError, match="cannot read summary file"):
        read_summary(tmp_path / "bad.json")


# ----------------------------------------------------------------------------- the page as text


def test_page_without_a_class_count_is_a_rank_order_grid_and_says_the_grouping_is_unknown(page_inputs):
    tmp, pool, rows = page_inputs
    r = show(tmp / "sel.csv", "--pool", pool, "--html", tmp / "r.html", "--embeddings", tmp / "emb.npz")
    assert r.exit_code == 0, r.output
    assert f"page: 9 images in rank order, with the map -> {tmp / 'r.html'}" in r.output
    assert not (tmp / "sel.sheet.png").exists()  # --html alone writes no sheet
    page = (tmp / "r.html").read_text(encoding="utf-8")
    assert external_references(page) == []
    assert "Content-Security-Policy" in page
    assert "default-src 'none'" in page
    assert re.findall(r'<figure id="pick-(\d+)"', page) == [str(k) for k in range(1, 10)]  # rank order
    assert page.count('src="data:image/') == 9 and "<h3>" not in page
    assert "the grouping is unknown" in page
    # each pick: rank, file name, group; a name that is markup stays text
    assert ODD_NAME not in page and html.escape(ODD_NAME) in page
    assert "<b>#2</b> <span class=\"name\">img00.png</span><br>group 5" in page
    # the map: every pool item, every pick, the hover's script inline
    assert page.count('class="pick"') == 9 and "14 images on the first two principal components" in page
    assert 'data-rank="1"' in page and "<script>" in page and "<script src" not in page


def test_page_is_grouped_only_by_a_confident_class_count_and_carries_the_summary(page_inputs):
    tmp, pool, rows = page_inputs
    summary_file(tmp / "sure.json", rows, estimate=3, low=3, high=4, confident=True)
    r = show(tmp / "sel.csv", "--pool", pool, "--html", tmp / "g.html", "--no-map", "--summary", tmp / "sure.json")
    assert r.exit_code == 0, r.output
    page = (tmp / "g.html").read_text(encoding="utf-8")
    heads = re.findall(r"</span>(group \d+): (\d+) images?</h3>", page)
    assert heads == [("group 0", "4"), ("group 5", "2"), ("group 9", "3")]  # in order of best rank
    # tab20 in order of best rank, as the PNG map colours them
    assert re.findall(r'class="dot" style="background:(#[0-9a-f]{6})"', page) == list(GROUP_COLORS[:3])
    order = re.findall(r'<figure id="pick-(\d+)"', page)
    assert order == ["1", "3", "6", "9", "2", "5", "4", "7", "8"]  # rank order within a group
    for text in ("14 images in pool (RGB, short side 24 px (median))", "encoder E", "typcover",
                 "about 3 (between 3 and 4), confident", f"about {random_coverage(3, 9):.1f} of 3 classes",
                 "K(1-(1-1/K)^B)", "No map: left out (--no-map)"):
        assert html.escape(text, quote=True) in page, text
    # not confident: the same picks in one rank-order grid, and the page says why
    summary_file(tmp / "unsure.json", rows, estimate=3, low=2, high=40, confident=False)
    r = show(tmp / "sel.csv", "--pool", pool, "--html", tmp / "u.html", "--no-map", "--summary", tmp / "unsure.json")
    assert r.exit_code == 0, r.output
    page = (tmp / "u.html").read_text(encoding="utf-8")
    assert "<h3>" not in page and "the class count is not confident" in page
    assert re.findall(r'<figure id="pick-(\d+)"', page) == [str(k) for k in range(1, 10)]


def test_page_reads_the_summary_select_prints_today(page_inputs):
    """A real ``selector select --json`` on the pool's embeddings, then show --summary with its output."""
    tmp, pool, rows = page_inputs
    s = CliRunner().invoke(main, ["select", "-b", 6, "--embeddings", str(tmp / "emb.npz"), "-o", str(tmp / "s.csv"),
                                  "--json", "-q"])
    assert s.exit_code == 0, s.output
    (tmp / "run.json").write_text(s.stdout, encoding="utf-8")
    run = json.loads(s.stdout)
    r = show(tmp / "s.csv", "--pool", pool, "--html", tmp / "s.html", "--summary", tmp / "run.json",
             "--embeddings", tmp / "emb.npz")
    assert r.exit_code == 0, r.output
    page = html.unescape((tmp / "s.html").read_text(encoding="utf-8"))
    assert f"strategy</th><td>{run['strategy']}</td>" in page
    # the class count as select printed it: its "classes" object (issue 29) when there is one, else the estimate
    # of today's summary, which is never confident
    classes = run.get("classes") if isinstance(run.get("classes"), dict) else {}
    estimate = classes.get("estimate", run["estimated_classes"])
    assert f"about {estimate}" in page
    if classes.get("confident") is True:
        assert ", confident" in page and "by estimated group (the class count is confident)" in page
    else:
        assert ", not confident" in page and "rank order: the class count is not confident" in page


def test_the_page_obeys_force_and_names_its_suffix(page_inputs):
    tmp, pool, rows = page_inputs
    (tmp / "r.html").write_text("keep", encoding="utf-8")
    r = show(tmp / "sel.csv", "--pool", pool, "--html", tmp / "r.html", "--no-map")
    assert r.exit_code == 1 and "--force" in r.output and (tmp / "r.html").read_text() == "keep"
    r = show(tmp / "sel.csv", "--pool", pool, "--html", tmp / "r.html", "--no-map", "-f")
    assert r.exit_code == 0 and (tmp / "r.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    r = show(tmp / "sel.csv", "--pool", pool, "--html", tmp / "r.txt")
    assert r.exit_code == 2 and ".html" in r.output
    r = show(tmp / "sel.csv", "--pool", pool, "--no-map")
    assert r.exit_code == 2 and "--no-map" in r.output


def test_a_map_that_needs_training_is_left_off_the_page_with_the_reason(page_inputs):
    """show never trains: with options whose encoder is not in the cache the page has no map and says why;
    asked for as --map PNG it is an error, as before."""
    tmp, pool, rows = page_inputs
    a = ["--arch", "resnet-small", "--epochs", 1, "--cache-dir", tmp / "cache"]
    r = show(tmp / "sel.csv", "--pool", pool, "--html", tmp / "r.html", *a)
    assert r.exit_code == 0, r.output
    assert "WARNING: the page has no map: no encoder trained on" in r.output and ", no map ->" in r.output
    assert "No map: no encoder trained on" in (tmp / "r.html").read_text(encoding="utf-8")
    r = show(tmp / "sel.csv", "--pool", pool, "--html", tmp / "m.html", "--map", tmp / "m.png", *a)
    assert r.exit_code == 1 and "no encoder trained on" in error_line(r)
    assert not (tmp / "m.html").exists() and not (tmp / "m.png").exists()


# ----------------------------------------------------------------------------- in a real browser


def chromium(tmp: Path, page: Path, *args: str, timeout: float = 90):
    """Open ``page`` in headless Chromium with ``args``: (stdout, its console messages: every console call and
    uncaught error of the page, and every load the page's policy refused).

    The browser runs in its own process group, killed whole (renderer and zygote too) when it overruns
    ``timeout`` or the test ends; it also gets SIGKILL from the kernel if the test process dies."""
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
           "--force-device-scale-factor=1", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
           *args, page.as_uri()]
    parent = os.getpid()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: die_with_parent(parent, watch=False))
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"headless Chromium did not finish {page.name} in {timeout:.0f} s (killed)")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything the browser left running
    assert proc.returncode == 0, err[-2000:]
    return out, [ln for ln in err.splitlines() if re.search(r":CONSOLE[:(]", ln)]


#: Appended to a copy of the page: hover the rank-1 pick, then write down what the page shows.
PROBE = """<script>
window.addEventListener("load", function () {
  var c = document.querySelector("#map .pick[data-rank='1']"), tip = document.getElementById("tip");
  c.dispatchEvent(new MouseEvent("mouseover", {clientX: 40, clientY: 40, bubbles: true}));
  var img = tip.querySelector("img"), shown = tip.style.display, label = tip.textContent;
  c.dispatchEvent(new MouseEvent("mouseout", {bubbles: true}));
  var imgs = document.querySelectorAll("#picks img"), decoded = 0;
  for (var k = 0; k < imgs.length; k++) if (imgs[k].complete && imgs[k].naturalWidth > 0) decoded++;
  var r = document.getElementById("picks").getBoundingClientRect(), out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({shown: shown, hidden: tip.style.display, label: label,
    same: !!img && img.src === document.getElementById("img-1").src, decoded: decoded, images: imgs.length,
    rect: [r.left, r.top, r.width, r.height]});
  document.body.appendChild(out);
});
</script>"""


@needs_chromium
def test_the_console_check_sees_errors_and_refused_loads(tmp_path):
    """The check below could fail: a page with a console error, an uncaught exception and an image from
    elsewhere under the report's policy gives three console messages."""
    from selector.report import CSP

    bad = tmp_path / "bad.html"
    bad.write_text(f'<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" content="{CSP}"></head>'
                   '<body><img src="http://example.invalid/x.png"><script>console.error("boom"); nope();</script>'
                   "</body></html>", encoding="utf-8")
    _, console = chromium(tmp_path, bad, "--dump-dom")
    text = "\n".join(console)
    assert '"boom"' in text and "nope is not defined" in text and "example.invalid" in text, text


@needs_chromium
def test_the_page_loads_in_chromium_without_console_errors_and_shows_the_grid(page_inputs):
    tmp, pool, rows = page_inputs
    summary_file(tmp / "sure.json", rows, estimate=3, low=3, high=4, confident=True)
    r = show(tmp / "sel.csv", "--pool", pool, "--html", tmp / "r.html", "--embeddings", tmp / "emb.npz",
             "--summary", tmp / "sure.json")
    assert r.exit_code == 0, r.output
    size = "--window-size=1200,2200"
    _, console = chromium(tmp, tmp / "r.html", f"--screenshot={tmp / 's.png'}", size)
    assert console == []
    # the same page with the probe: hovering a pick shows its thumbnail, every thumbnail decodes
    probe = tmp / "probe.html"
    probe.write_text((tmp / "r.html").read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"),
                     encoding="utf-8")
    dom, console = chromium(tmp, probe, "--dump-dom", size)
    assert console == []
    got = json.loads(html.unescape(re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)[1]))
    assert got["shown"] == "block" and got["hidden"] == "none" and got["same"], got
    assert got["label"] == f"#1 {ODD_NAME} (group 0)"
    assert got["decoded"] == got["images"] == 9
    # the screenshot: the picks' box holds the noise thumbnails (thousands of colours), not a blank page
    shot = np.asarray(Image.open(tmp / "s.png").convert("RGB"))
    x, y, w, h = (int(round(v)) for v in got["rect"])
    assert w > 200 and h > 96 and y + h <= shot.shape[0], got["rect"]
    box = shot[y:y + h, x:x + w].reshape(-1, 3)
    assert len(np.unique(box, axis=0)) > 2000
    top = shot[:y].reshape(-1, 3)  # the title and the summary above it: text, a few hundred shades at most
    assert len(np.unique(top, axis=0)) < len(np.unique(box, axis=0)) / 4
