"""Evaluation reports: ``report.json``, a success-rate chart (PNG) and an HTML page with the
chart, the per-task table, rollout videos and (when given) the training curves."""

from __future__ import annotations

import html
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from librobot.core.checkpoint import atomic_write_text, write_json
from librobot.train.evaluation.closed_loop import ClosedLoopReport


def success_chart(report: ClosedLoopReport, path: Path) -> Path:
    """Bars of success rate per task with their 95% Wilson intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(report.per_env().values())
    labels = [r.env.removeprefix("metaworld-") for r in rows]
    rates = [100 * r.success_rate for r in rows]
    # (at 0% or 100% the interval's end equals the rate up to rounding: never a negative bar)
    lower = [max(0.0, 100 * (r.success_rate - r.ci95[0])) for r in rows]
    upper = [max(0.0, 100 * (r.ci95[1] - r.success_rate)) for r in rows]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(rows) + 1.5), 3.2), dpi=110)
    ax.bar(labels, rates, yerr=[lower, upper], capsize=4, color="#4c72b0")
    ax.set_ylim(0, 105)
    ax.set_ylabel("success (%)")
    lo, hi = report.ci95
    ax.set_title(f"closed-loop success {100 * report.success_rate:.0f}% [{100 * lo:.0f}, {100 * hi:.0f}] (95% CI)")
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def _table(report: ClosedLoopReport) -> str:
    rows = []
    for s in report.per_env().values():
        rows.append(
            f"<tr><td>{html.escape(s.env)}</td><td>{html.escape(s.task)}</td><td>{s.successes}/{s.episodes}</td>"
            f"<td>{100 * s.success_rate:.0f}%</td><td>[{100 * s.ci95[0]:.0f}%, {100 * s.ci95[1]:.0f}%]</td>"
            f"<td>{s.mean_length:.0f}</td></tr>"
        )
    head = "<tr><th>env</th><th>instruction</th><th>successes</th><th>rate</th><th>95% CI</th><th>mean length</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def write_report(
    report: ClosedLoopReport,
    out_dir: str | Path,
    *,
    title: str = "LibroBot evaluation",
    extra: Mapping[str, Any] | None = None,
    curves: str | Path | None = None,
) -> Path:
    """Write report.json, success.png and index.html into ``out_dir``; return the HTML path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "report.json", {**report.to_dict(), **dict(extra or {})})
    success_chart(report, out / "success.png")
    parts = [f"<h1>{html.escape(title)}</h1>", '<img src="success.png" alt="success rates">', _table(report)]
    if extra:
        items = "".join(f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>" for k, v in extra.items())
        parts.append(f"<h2>details</h2><ul>{items}</ul>")
    if curves is not None and Path(curves).is_file():
        shutil.copyfile(curves, out / "curves.png")
        parts.append('<h2>training</h2><img src="curves.png" alt="training curves">')
    videos = [r for r in report.results if r.video]
    if videos:
        parts.append("<h2>rollouts</h2>")
        for r in videos:
            rel = os.path.relpath(r.video, out)  # type: ignore[arg-type]
            verdict = "success" if r.success else "failure"
            parts.append(
                f"<figure><video src='{html.escape(rel)}' controls loop muted width='256'></video>"
                f"<figcaption>{html.escape(r.task)} — {verdict} in {r.length} steps</figcaption></figure>"
            )
    style = "body{font-family:sans-serif;max-width:960px;margin:2em auto}td,th{padding:2px 10px;text-align:left}figure{display:inline-block}"
    page = f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style>{''.join(parts)}"
    return atomic_write_text(out / "index.html", page)
