"""The Snakemake report (`snakemake --report report.html`), rendered in a real headless browser.

The report is a JavaScript app: its results are embedded as JSON and become page content only when the app
runs. So the page is opened in headless Chromium with a small driver script appended to a copy of it. The
driver navigates the way the report's own links do (``app.showCategory``, ``app.showResultInfo``), clicks the
rendered "view" button of each figure, and writes what the page then shows (visible text, the cells of the
rendered tables, the size of the displayed image) as JSON into the page, which ``--dump-dom`` returns.

Checked: the report opens on the workflow description with the config that was used; every figure PNG and
every table CSV of the run is a report item, listed in its category, with its caption; each table is shown
inline, cell for cell equal to the CSV file; each figure is displayed as the PNG the run wrote.

Needs a Chromium binary (``chromium``, ``chromium-browser``, ``google-chrome`` on PATH, or the path in
PAIBENCH_CHROMIUM); without one the tests skip, or fail when PAIBENCH_REQUIRE_CHROMIUM=1 (.ci/run sets it
once chromium is installed).
"""

from __future__ import annotations

import csv
import html
import json
import os
import re
import shutil
import signal
import struct
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, run_snakemake, tiny_config

pytestmark = pytest.mark.workflow

# Two runs (dense and random at 10x, one seed): the smallest real grid that makes every table and figure.
CONFIG = tiny_config(methods=["dense", "random"], compressions=[10])
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# Appended to a copy of the report; reads the app's own globals (`app`, `categories`, `results`).
DRIVER = r"""
(function () {
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  async function until(cond, what) {
    for (let i = 0; i < 200; i++) {
      if (cond()) return;
      await sleep(10);
    }
    throw new Error("timed out waiting for " + what + "; the sidebar shows: " + text(sidebar()).slice(0, 2000));
  }
  const sidebar = () => document.querySelector("#app nav");
  const pane = () => sidebar().nextElementSibling;
  const text = (el) => el.innerText.replace(/\s+/g, " ").trim();
  const tables = (el) => [...el.querySelectorAll("table")].map(
    (t) => [...t.rows].map((row) => [...row.cells].map((cell) => cell.innerText.trim())));
  // In a result's description the path is a <span> beside its "view" button; listings show it in a <td>.
  const pathLabel = (path) => [...sidebar().querySelectorAll("span")].find(
    (s) => s.textContent === path && s.nextElementSibling && s.nextElementSibling.tagName === "A");
  const listed = (paths) => () => paths.every((p) => sidebar().innerText.includes(p));

  async function walk() {
    const out = { start: null, categories: {}, items: {} };
    await until(() => sidebar() && document.querySelector("#app div.document"), "the start page");
    out.start = { sidebar: text(sidebar()), pane: text(pane()) };
    for (const category of Object.keys(categories)) {
      const subcategories = Object.keys(categories[category]);
      app.showCategory(category);
      await until(listed(subcategories.length > 1 ? subcategories : categories[category][subcategories[0]]),
                  "category " + category);
      const entry = { listing: text(sidebar()), subcategories: {} };
      out.categories[category] = entry;
      for (const subcategory of subcategories) {
        const paths = categories[category][subcategory];
        app.setView({ navbarMode: "subcategory", category: category, subcategory: subcategory });
        await until(listed(paths), "the listing of " + category + " / " + subcategory);
        entry.subcategories[subcategory] = text(sidebar());
        for (const path of paths) {
          app.showResultInfo(path);
          await until(() => pathLabel(path), "the description of " + path);
          const caption = [...sidebar().querySelectorAll("li.prose")];
          const item = {
            category: category, subcategory: subcategory, mime: results[path].mime_type,
            info: text(sidebar()), caption: caption.map(text).join(" "),
            tables: caption.flatMap(tables), image: null,
          };
          if (item.mime.startsWith("image/")) {
            pathLabel(path).nextElementSibling.click();  // the "view" button, as a reader clicks it
            await until(() => {
              const img = pane().querySelector("img");
              return img && img.src === results[path].data_uri && img.complete;
            }, "the image of " + path);
            const img = pane().querySelector("img");
            item.image = { width: img.naturalWidth, height: img.naturalHeight };
          }
          out.items[path] = item;
        }
      }
    }
    return out;
  }

  function publish(value) {
    const pre = document.createElement("pre");
    pre.id = "paibench-walk";
    pre.textContent = JSON.stringify(value);
    document.body.appendChild(pre);
  }
  walk().then(publish, (err) => publish({ error: String(err && err.stack || err) }));
})();
"""


def _browser() -> str:
    found = os.environ.get("PAIBENCH_CHROMIUM") or next(filter(None, map(shutil.which, BROWSERS)), None)
    if not found:
        reason = (f"no headless browser found ({', '.join(BROWSERS)} not on PATH; Debian: apt-get install "
                  "chromium, which .ci/run does)")
        if os.environ.get("PAIBENCH_REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"chromium required (PAIBENCH_REQUIRE_CHROMIUM=1) but unavailable: {reason}")
        pytest.skip(reason)
    return found


def _render(browser: str, page: Path, profile: Path, timeout: float = 90) -> str:
    """The DOM of `page` after its scripts ran (10 s of virtual time), as headless Chromium dumps it."""
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom", page.as_uri()]
    # Its own process group: on a timeout every Chromium process goes, not only the first.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, f"{browser} failed ({proc.returncode}): {err[-2000:]}"
    return out


def _words(s: str) -> str:
    return re.sub(r"\s+", " ", s.replace("\xa0", " ")).strip()


def _caption_phrase(rst: Path) -> str:
    """The longest stretch of a caption file's prose without markup or template code: it must appear as is."""
    prose = rst.read_text().split("\n..")[0]
    prose = re.sub(r"{{.*?}}|{%.*?%}", "|", prose, flags=re.S)
    return max((_words(p) for p in re.split(r"[*`|\"]", prose)), key=len)


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])


def _csv_rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        return [[cell.strip() for cell in row] for row in csv.reader(f)]


@pytest.fixture(scope="module")
def browser():
    return _browser()


@pytest.fixture(scope="module")
def rendered(browser, tmp_path_factory):
    """A tiny real run, its report, and what the browser shows of it."""
    work = tmp_path_factory.mktemp("report")
    run_snakemake(work, CONFIG)
    run_snakemake(work, CONFIG, "--report", "report.html")
    report = work / "report.html"
    page = report.read_text()
    head, body_end, tail = page.rpartition("</body>")
    assert body_end, "report.html has no </body>"
    walk_page = work / "report-walk.html"
    walk_page.write_text(f"{head}<script>{DRIVER}</script>{body_end}{tail}")
    try:
        dom = _render(browser, walk_page, work / "chromium-profile")
    except subprocess.TimeoutExpired:  # headless Chromium rarely stalls on a page; a fresh one does not
        dom = _render(browser, walk_page, work / "chromium-profile-2")
    found = re.search(r'<pre id="paibench-walk">(.*?)</pre>', dom, re.S)
    assert found, "the driver wrote no result: the report's app did not run (DOM starts: " + dom[:500] + ")"
    walk = json.loads(html.unescape(found.group(1)))
    assert "error" not in walk, walk.get("error")
    return work, walk


def test_report_opens_on_workflow_description_with_the_config(rendered):
    _, walk = rendered
    start = _words(walk["start"]["pane"])
    for phrase in ("paibench: pruning-at-initialization benchmark", "Workflow", "prepare_data", "Configuration used",
                   "Default training recipe: batch_size=32, epochs=3, lr=0.05",
                   "datasets: digits", "architectures: vgg16 (width=0.125)", "methods: dense, random",
                   "compression ratios: 10", "seeds: 0", '"experiments": {'):
        assert phrase in start, f"{phrase!r} not on the report's start page: {start[:3000]}"
    for category in ("overview", "tables", "tiny"):
        assert category in walk["start"]["sidebar"]  # the menu lists every category


def test_every_figure_and_table_is_a_report_item_with_its_caption(rendered):
    work, walk = rendered
    figures = sorted(p.relative_to(work).as_posix() for p in (work / "results/figures").rglob("*.png"))
    tables = sorted(p.relative_to(work).as_posix() for p in (work / "results/tables").glob("*.csv"))
    assert len(figures) == 7 and {"results/tables/runs.csv", "results/tables/summary.csv",
                                  "results/tables/mica.csv", "results/tables/force.csv",
                                  "results/tables/rreg.csv"} == set(tables)
    assert sorted(walk["items"]) == sorted(figures + tables)
    for path in figures + tables:
        item = walk["items"][path]
        name = Path(path).name
        listing = walk["categories"][item["category"]]["subcategories"][item["subcategory"]]
        assert name in listing, f"{name} not listed in {item['category']} / {item['subcategory']}: {listing}"
        # Caption files: one per figure name, runs.rst and summary.rst, one table.rst for every paper table.
        caption = Path(path).stem if path in figures or Path(path).stem in ("runs", "summary") else "table"
        phrase = _caption_phrase(REPO / "workflow/report" / f"{caption}.rst")
        assert len(phrase) > 30 and phrase in _words(item["caption"]), (path, phrase, item["caption"][:1000])
    assert walk["items"]["results/figures/tiny/accuracy_nominal.png"]["category"] == "tiny"
    assert "Experiment tiny:" in walk["items"]["results/figures/tiny/accuracy_nominal.png"]["caption"]


def test_figures_are_displayed(rendered):
    work, walk = rendered
    for path, item in walk["items"].items():
        if path.endswith(".png"):
            assert item["image"] == dict(zip(("width", "height"), _png_size(work / path))), path


def test_tables_are_shown_inline_cell_for_cell(rendered):
    work, walk = rendered
    for path, item in walk["items"].items():
        if not path.endswith(".csv"):
            continue
        rows = _csv_rows(work / path)
        assert len(rows) > 1, path
        assert rows in item["tables"], f"{path}: no rendered table equals the CSV; shown: {item['tables']}"
    runs = walk["items"]["results/tables/runs.csv"]
    assert "random" in runs["info"] and "digits" in runs["info"]
    # A value from the file, as the reader sees it: the random run's accuracy.
    rows = _csv_rows(work / "results/tables/runs.csv")
    header, random_run = rows[0], next(r for r in rows[1:] if r[rows[0].index("method")] == "random")
    accuracy = next(random_run[i] for i, col in enumerate(header) if col.startswith("accuracy"))
    assert accuracy and accuracy in runs["info"]
    # Paper tables also show the paper's layout (title and budget line) from the Markdown file.
    for paper in ("mica", "force", "rreg"):
        title = (work / f"results/tables/{paper}.md").read_text().splitlines()[0].strip("*")
        assert title in walk["items"][f"results/tables/{paper}.csv"]["info"], paper
