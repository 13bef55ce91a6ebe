"""Train five digits runs (the quickstart's teacher, CE baseline and KD student; DKD, DIST and two other student
sizes distilled from that teacher), compare them with `distill report`, and screenshot the page in headless
Chromium (Debian's `chromium` package) into docs/report-compare.png (< 300 KB).

    flock /tmp/heavy.lock .venv/bin/python benchmarks/report_screenshot.py   # ~3 min on 2 idle cores
    .venv/bin/python benchmarks/report_screenshot.py --reuse                   # page and screenshot only
"""
from __future__ import annotations

import argparse
import copy
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from common import ROOT

from distill.report.compare_page import build_comparison, format_comparison
from distill.tasks import build_recipe

QUICKSTART = ROOT / "recipes" / "quickstart-digits.yaml"
WINDOW = (1100, 1240)
MAX_BYTES = 300_000


def arms(out: Path) -> list[tuple[str, dict]]:
    """(run name, recipe changes); every run after the first loads the first run's teacher."""
    teacher = {"name": "small_cnn", "kwargs": {"channels": [64, 128], "convs_per_stage": 2},
               "checkpoint": str(out / "digits-kd" / "teacher")}
    return [("digits-kd", {}),
            ("digits-dkd", {"teacher": teacher, "baseline": False,
                            "method": {"name": "dkd", "alpha": 1.0, "beta": 2.0, "temperature": 4.0, "warmup_epochs": 5}}),
            ("digits-dist", {"teacher": teacher, "baseline": False, "method": {"name": "dist"}}),
            ("digits-kd-mlp128", {"teacher": teacher, "baseline": False, "student": {"name": "mlp", "kwargs": {"hidden": [128]}}}),
            ("digits-kd-cnn", {"teacher": teacher, "baseline": False,
                               "student": {"name": "small_cnn", "kwargs": {"channels": [8, 16]}}})]


def train(out: Path) -> list[str]:
    base = yaml.safe_load(QUICKSTART.read_text())
    folders = []
    for name, changes in arms(out):
        recipe = copy.deepcopy(base)
        recipe.update(changes, name=name, output_dir=str(out), progress=False)
        task, cfg = build_recipe(recipe)
        started = time.perf_counter()
        task.run(cfg, overwrite=True)
        print(f"{name}: {time.perf_counter() - started:.0f} s", flush=True)
        folders.append(str(out / name))
    return folders


def screenshot(page: Path, png: Path) -> None:
    """Render `page` in headless Chromium at WINDOW and store it as a palette PNG."""
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("chromium is not installed: apt-get install -y chromium")
    raw = png.with_suffix(".raw.png")
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={raw}", f"--window-size={WINDOW[0]},{WINDOW[1]}", page.resolve().as_uri()],
                   check=True, capture_output=True, timeout=120)
    from PIL import Image  # matplotlib's dependency
    image = Image.open(raw).convert("RGB")
    image.save(png, optimize=True)
    if png.stat().st_size > MAX_BYTES:  # a 256-colour palette keeps text and plot colours legible
        image.quantize(colors=256).save(png, optimize=True)
    raw.unlink()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default=str(ROOT / "runs" / "report-demo"), help="where the five runs go")
    p.add_argument("--reuse", action="store_true", help="compare the runs already there instead of training")
    p.add_argument("--png", default=str(ROOT / "docs" / "report-compare.png"))
    args = p.parse_args()
    out = Path(args.runs)
    folders = [str(out / name) for name, _ in arms(out)] if args.reuse else train(out)
    page, comparison = build_comparison(folders, out / "report.html")
    print(format_comparison(comparison))
    png = Path(args.png)
    png.parent.mkdir(parents=True, exist_ok=True)
    screenshot(page, png)
    print(f"\npage: {page}\nscreenshot: {png} ({png.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
