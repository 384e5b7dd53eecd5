"""Open a report.html in headless Chromium: save a screenshot, or print the DOM after its script ran.

    python scripts/report_screenshot.py bench/report.html --out report.png
    python scripts/report_screenshot.py eval/report.html --out docs/img/report.png --width 1280 --height 1500 --scale 0.6
    python scripts/report_screenshot.py eval/report.html --view "sort=name&misses" --dump-dom > dom.html

Chromium is not a dependency of the package: install it from the system (``apt-get install
chromium``) or point ``CHROMIUM`` at a Chrome/Chromium binary. The page is opened from disk
with the network off, so a report that needs anything from outside shows it as missing.
``--scale`` shrinks the screenshot (OpenCV, area interpolation) to keep docs images small.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_BINARIES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium() -> str | None:
    """The Chromium binary to use: $CHROMIUM, else the first known name on PATH."""
    configured = os.environ.get("CHROMIUM")
    if configured:
        return configured
    return next((path for path in map(shutil.which, _BINARIES) if path), None)


def _command(binary: str, width: int, height: int) -> list[str]:
    command = [
        binary, "--headless", "--disable-gpu", "--hide-scrollbars", "--no-first-run", "--mute-audio",
        "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",  # no request leaves the machine
        f"--window-size={width},{height}", "--virtual-time-budget=3000",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
    return command


def _url(report: Path, view: str) -> str:
    return report.resolve().as_uri() + (f"#{view}" if view else "")


def dump_dom(report: Path, *, view: str = "", binary: str | None = None, timeout: float = 120.0) -> str:
    """The page's DOM after its script ran, as Chromium serialises it."""
    binary = binary or find_chromium()
    if binary is None:
        msg = "no Chromium found: install it (apt-get install chromium) or set CHROMIUM=/path/to/chrome"
        raise FileNotFoundError(msg)
    with tempfile.TemporaryDirectory() as profile:
        command = [*_command(binary, 1280, 900), f"--user-data-dir={profile}", "--dump-dom", _url(report, view)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0 or "<html" not in done.stdout:
        msg = f"chromium --dump-dom failed (exit {done.returncode}): {done.stderr[-2000:]}"
        raise RuntimeError(msg)
    return done.stdout


def screenshot(
    report: Path, out: Path, *, width: int = 1280, height: int = 1600, scale: float = 1.0, view: str = "",
    binary: str | None = None, timeout: float = 120.0,
) -> Path:
    """A PNG of the page's first ``height`` CSS pixels at ``width``, optionally shrunk by ``scale``."""
    binary = binary or find_chromium()
    if binary is None:
        msg = "no Chromium found: install it (apt-get install chromium) or set CHROMIUM=/path/to/chrome"
        raise FileNotFoundError(msg)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        shot = Path(scratch) / "shot.png"
        command = [
            *_command(binary, width, height), f"--user-data-dir={Path(scratch) / 'profile'}",
            f"--screenshot={shot}", _url(report, view),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0 or not shot.exists():
            msg = f"chromium --screenshot failed (exit {done.returncode}): {done.stderr[-2000:]}"
            raise RuntimeError(msg)
        import cv2

        image = cv2.imread(str(shot), cv2.IMREAD_COLOR)
        if scale != 1.0:
            size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(out), image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="report.html written by eval or bench")
    parser.add_argument("--out", type=Path, default=Path("report.png"), help="screenshot PNG to write")
    parser.add_argument("--width", type=int, default=1280, help="window width in CSS pixels")
    parser.add_argument("--height", type=int, default=1600, help="window height: how much of the page is captured")
    parser.add_argument("--scale", type=float, default=1.0, help="shrink the PNG by this factor (0 < scale <= 1)")
    parser.add_argument("--view", default="", help="gallery view in the URL, e.g. 'sort=name&group=0&misses'")
    parser.add_argument("--dump-dom", action="store_true", help="print the DOM after the page's script ran instead")
    args = parser.parse_args(argv)
    if not args.report.is_file():
        parser.error(f"{args.report} is not a file; pass the report.html that eval or bench wrote")
    if not 0.0 < args.scale <= 1.0:
        parser.error(f"--scale must be in (0, 1], got {args.scale}")
    if args.dump_dom:
        sys.stdout.write(dump_dom(args.report, view=args.view))
        return 0
    path = screenshot(args.report, args.out, width=args.width, height=args.height, scale=args.scale, view=args.view)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
