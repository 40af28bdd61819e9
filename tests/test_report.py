"""``mtnas report``: one self-contained HTML page, checked as text and rendered in headless Chromium.

The Chromium test skips where Debian's ``chromium`` is not installed; it fails when CI=true
(``.ci/run`` installs it), so a missing install step cannot pass silently.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mtnas.cli import main
from mtnas.core import MtnasError
from mtnas.report import write_report
from tests.test_viz_study import searched_run  # noqa: F401  (the shared tiny search, a session fixture)

IMG_TAG = re.compile(r"<img\b[^>]*>")
DATA_PNG = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def report(searched_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    run = tmp_path_factory.mktemp("report") / "r"
    shutil.copytree(searched_run, run)  # a copied run folder reads its own study.db
    return write_report(run)


def _png(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def test_the_report_is_one_self_contained_page(report: Path) -> None:
    assert report.name == "report.html" and report.parent.name == "r"
    page = report.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "an external resource"
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page
    tags = IMG_TAG.findall(page)
    uris = DATA_PNG.findall(page)
    trees = len(json.loads((report.parent / "pareto.json").read_text()))
    assert len(tags) == len(uris) == 1 + trees + 2  # Pareto front, its trees, routing, history (no importances)
    for uri in uris:
        pixels = _png(base64.b64decode(uri, validate=True))
        assert pixels.shape[0] > 50 and pixels.shape[1] > 50 and pixels.std() > 5
    for text in ("Pareto front", "Pareto trees", "Routing evolution of trial 2", "Optimisation history",
                 "Hyperparameter importances", "differentiable", "enqueued all-shared", "enqueued independent"):
        assert text in page, text
    rows = re.findall(r"<tr class=\"[a-z]*\"><td class=\"num\">(\d+)", page)
    assert rows == ["0", "1", "2"]  # every trial in the table


def test_cli_report_prints_the_path_and_rejects_a_missing_run(
    searched_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture  # noqa: F811
) -> None:
    out = tmp_path / "elsewhere" / "page.html"
    assert main(["report", str(searched_run), "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert out.is_file() and not (searched_run / "report.html").exists()
    assert main(["report", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert "no such run folder" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    with pytest.raises(MtnasError, match="not an mtnas run folder"):
        write_report(tmp_path / "empty")


def test_a_retrained_tree_of_the_run_is_on_its_report(searched_run: Path, tmp_path: Path,  # noqa: F811
                                                       capsys: pytest.CaptureFixture) -> None:
    from mtnas.export import export_trial
    from mtnas.train import retrain

    run = tmp_path / "r"
    shutil.copytree(searched_run, run)
    assert "<h2>Retrained</h2>" not in write_report(run).read_text()  # nothing retrained yet
    exported = export_trial(run, run / "export", trial=2)
    final = retrain(exported.files["arch"], epochs=1, progress=False)
    page = write_report(run).read_text()
    assert "<h2>Retrained</h2>" in page
    section = page.split("<h2>Retrained</h2>", 1)[1].split("<h2>", 1)[0]
    assert f"{final.delta_m('test'):+.2f} %" in section and final.tree.describe() in section
    assert "<th>trial</th><td>2" in section and 'alt="retrain curves of trial 2' in section
    for task in final.tree.tasks:
        assert f"<td>{task}</td>" in section


# --- headless Chromium ---------------------------------------------------------------------------

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]

#: appended to a copy of the page: once everything has loaded, count the images that did
IMAGE_PROBE = """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var complete = images.filter(function (i) { return i.complete; }).length;
  var drawn = images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var marker = document.createElement("p");
  marker.textContent = "IMAGES:" + complete + "/" + images.length + "/" + drawn;
  document.body.appendChild(marker);
});
</script>"""


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        reason = "Chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}: .ci/run must install it")
        pytest.skip(reason)
    return found


def _run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def test_chromium_renders_the_report_with_every_image(report: Path, tmp_path: Path) -> None:
    binary = _chromium()
    shot = tmp_path / "screenshot.png"
    done = _run_chromium(binary, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1200,2000",
                         report.resolve().as_uri())
    assert shot.is_file(), done.stderr[-2000:]
    pixels = _png(shot.read_bytes()).astype(float)
    assert pixels.shape[:2] == (2000, 1200)
    assert pixels.std() > 20, "the screenshot is blank"
    assert (pixels.mean(-1) < 200).mean() > 0.02, "almost nothing drawn on the page"

    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text().replace("</body>", IMAGE_PROBE + "</body>"))
    done = _run_chromium(binary, tmp_path / "profile", "--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    found = re.search(r"IMAGES:(\d+)/(\d+)/(\d+)", done.stdout)
    assert found, f"no image count in the DOM dump: {done.stdout[-500:]!r} {done.stderr[-1000:]!r}"
    complete, total, drawn = map(int, found.groups())
    assert total == len(IMG_TAG.findall(report.read_text())) >= 4
    assert complete == drawn == total, f"{total - drawn} of {total} images did not load"


def test_the_report_shows_what_a_trained_search_trained(tmp_path: Path) -> None:
    from mtnas.viz import candidates_of, draw_candidates
    from tests.test_viz_study import tiny_run

    root, study = tiny_run(tmp_path, method="trained")
    found = candidates_of(root / "trials" / "0002" / "candidates.json")
    assert found.chosen is not None and found.trees[found.chosen] == study.trials[2].user_attrs["tree"]
    assert len(found.trees) == len(found.delta_m) == len(found.delta_m_again) == len(found.cost) >= 2
    assert found.noise >= 0 and "0-3: all" in found.trees
    assert found.gain == study.trials[2].params.get("gain_per_cost", 5.0)  # the chosen tree's score line
    assert _png(draw_candidates(found, tmp_path / "c.png").read_bytes()).std() > 5
    page = write_report(root).read_text()
    assert "What the search of trial 2 trained" in page and "Routing evolution" not in page
    bad = tmp_path / "bad.json"
    bad.write_text('{"trees": [{"tree": "0-3: all"}]}')
    with pytest.raises(MtnasError, match="not a candidates file"):
        candidates_of(bad)
