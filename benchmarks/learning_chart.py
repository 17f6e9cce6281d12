"""Draw learning-benchmark results as one chart: mean closed-loop success per framework with its
95% interval, one bar per observation kind (state, state + 96x96 camera), and training time.

    python benchmarks/learning_chart.py benchmarks/results/learning_state.jsonl \
        benchmarks/results/learning_images.jsonl --out benchmarks/results/learning.png

Takes the latest line per (framework, observations, steps), as ``learning.py --table`` does.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learning import latest_rows

COLORS = {"state": "#4c72b0", "state+image96": "#dd8452"}


def draw(rows: list[dict], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [k for k in COLORS if any(r["observations"] == k for r in rows)]
    kinds += sorted({r["observations"] for r in rows} - set(kinds))
    by = {(r["framework"], r["observations"]): r for r in rows}
    # best first by the first kind's success (frameworks missing it go last)
    frameworks = sorted(
        {r["framework"] for r in rows}, key=lambda f: -by.get((f, kinds[0]), {}).get("success_mean", -1)
    )
    fig, (success_ax, time_ax) = plt.subplots(1, 2, figsize=(11, 0.45 * len(frameworks) + 1.8), dpi=110, sharey=True)
    height = 0.8 / len(kinds)
    for k, kind in enumerate(kinds):
        ys, rates, err, minutes = [], [], [[], []], []
        for i, framework in enumerate(frameworks):
            r = by.get((framework, kind))
            if r is None:
                continue
            lo, hi = r["success_ci95"]
            ys.append(i + (k - (len(kinds) - 1) / 2) * height)
            rates.append(100 * r["success_mean"])
            err[0].append(max(0.0, rates[-1] - 100 * lo))  # never negative at 0% / 100%
            err[1].append(max(0.0, 100 * hi - rates[-1]))
            minutes.append(r["train_seconds"] / 60)
        color = COLORS.get(kind, f"C{k}")
        success_ax.barh(ys, rates, height, xerr=err, capsize=2, color=color)
        for y, rate in zip(ys, rates):
            success_ax.text(2, y, f"{rate:.0f}%", va="center", fontsize=7, color="white")
        time_ax.barh(ys, minutes, height, color=color, label=kind)
    success_ax.set_yticks(range(len(frameworks)), frameworks)
    success_ax.invert_yaxis()
    success_ax.set_xlim(0, 100)
    tasks = max(len(r["per_task"]) for r in rows)
    success_ax.set_xlabel(f"closed-loop success over {tasks} Meta-World tasks (%, 95% CI)")
    time_ax.legend(loc="lower right", fontsize=8)
    time_ax.set_xlabel("training time on this CPU (min)")
    steps = sorted({r["steps"] for r in rows})
    fig.suptitle(f"one instruction-conditioned policy per framework, {'/'.join(map(str, steps))} steps", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, out)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="learning.py result files (JSONL)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/learning.png"))
    args = parser.parse_args()
    missing = [str(p) for p in args.results if not p.is_file()]
    if missing:
        parser.error(f"no such results file: {', '.join(missing)}")
    rows = latest_rows(args.results)
    if not rows:
        parser.error("the results files hold no result lines")
    print(draw(rows, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
