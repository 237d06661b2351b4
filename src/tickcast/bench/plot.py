"""Latency against client count, from ``tickcast bench --json`` files.

``python -m tickcast.bench.plot bench-results/*.json --out docs/latency.png``

One line per server and percentile (p50, p99, p99.9), x = clients connected. Needs
matplotlib (``pip install 'tickcast[bench]'``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

PERCENTILES = (("p50_ms", "p50", ":"), ("p99_ms", "p99", "-"), ("p999_ms", "p99.9", "--"))
COLOURS = {"tickcast": "tab:blue", "naive": "tab:red", "raw": "tab:green"}

Point = tuple[int, float]


def series(results: Iterable[dict[str, Any]]) -> dict[tuple[str, str], list[Point]]:
    """``(server, percentile key) -> [(clients connected, ms)]``, sorted by clients.

    Runs that failed or measured nothing are left out; several files at the same client
    count each give a point.
    """
    out: dict[tuple[str, str], list[Point]] = {}
    for result in results:
        for name, run in result.get("runs", {}).items():
            if "error" in run:
                continue
            clients = int(run["clients"]["connected"])
            for key, _, _ in PERCENTILES:
                value = run["latency_ms"].get(key)
                if value is not None and clients > 0:
                    out.setdefault((name, key), []).append((clients, float(value)))
    return {k: sorted(points) for k, points in out.items()}


def load(paths: Sequence[Path]) -> list[dict[str, Any]]:
    results = []
    for path in paths:
        data = json.loads(path.read_text())
        if isinstance(data, dict):
            results.append(data)
    return results


def draw(lines: dict[tuple[str, str], list[Point]], out: Path, title: str) -> None:
    # Imported here, untyped: matplotlib is an optional extra, absent from a dev install.
    matplotlib: Any = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    pyplot: Any = importlib.import_module("matplotlib.pyplot")
    figure, axes = pyplot.subplots(figsize=(8, 5))
    labels = {key: label for key, label, _ in PERCENTILES}
    styles = {key: style for key, _, style in PERCENTILES}
    order = {key: index for index, (key, _, _) in enumerate(PERCENTILES)}
    for (name, key), points in sorted(
        lines.items(), key=lambda item: (item[0][0], order[item[0][1]])
    ):
        xs, ys = zip(*points, strict=True)
        axes.plot(
            xs, ys, styles[key], marker="o", color=COLOURS.get(name), label=f"{name} {labels[key]}"
        )
    axes.set_xlabel("clients connected")
    axes.set_ylabel("end-to-end latency (ms)")
    axes.set_yscale("log")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)
    pyplot.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tickcast.bench.plot", description=__doc__)
    parser.add_argument("results", nargs="+", type=Path, help="JSON files of tickcast bench")
    parser.add_argument("--out", type=Path, default=Path("docs/latency.png"), help="PNG")
    parser.add_argument("--title", default="tickcast bench: latency vs clients")
    args = parser.parse_args(argv)
    lines = series(load(args.results))
    if not lines:
        print("plot: no latency figures in those files", file=sys.stderr)
        return 1
    try:
        draw(lines, args.out, args.title)
    except ModuleNotFoundError:
        print("plot: matplotlib is missing: pip install 'tickcast[bench]'", file=sys.stderr)
        return 1
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
