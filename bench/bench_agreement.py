"""Do two `sllm bench --json` runs of the same command agree within their reported spread?

For each model and figure (decode tok/s, prefill tok/s, and the decode ratio to the first model)
it compares run A's mean ± std with run B's. The two agree on a figure when the difference of the
means is at most the standard deviation of that difference, sqrt(std_A^2 + std_B^2): a one-sigma
test, stricter than "the two error bars overlap" (std_A + std_B) and looser than "each mean lies
inside the other's bar" (min(std_A, std_B)); the result file gives all of them and two sigma
(the 95 % band of a normal difference), so a reader can apply either. With four figures, even
exact sigmas leave all four inside one sigma only about a fifth of the time (0.68^4). Writes a result file with both runs' provenance.

  .venv/bin/python bench/bench_agreement.py bench/results/bench_tour.json \\
      bench/results/bench_tour_rerun.json --json bench/results/bench_tour_agreement.json
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import provenance  # noqa: E402

FIGURES = (("decode tok/s", ("decode_tok_s",)), ("prefill tok/s", ("prefill_tok_s",)),
           ("decode x first", ("ratio_vs_first", "decode_tok_s")))


def figure(model: dict, path: tuple[str, ...]) -> tuple[float, float] | None:
    v = model
    for k in path:
        v = v.get(k) if isinstance(v, dict) else None
    if not isinstance(v, dict) or not isinstance(v.get("mean"), (int, float)):
        return None
    return float(v["mean"]), float(v.get("std") or 0.0)


# Settings two runs must share for their speed figures to be comparable (quality options may
# differ: a run without --task/--ppl measures speed the same way).
SPEED_SETTINGS = ("batch", "device", "dtype", "ignore_eos", "max_new_tokens", "prompt_set",
                  "prompts", "threads", "warmup", "chat_template")


def compare(a: dict, b: dict) -> list[dict]:
    for k in SPEED_SETTINGS:
        if a["settings"].get(k) != b["settings"].get(k):
            raise SystemExit(f"the runs differ in {k}: {a['settings'].get(k)!r} vs "
                             f"{b['settings'].get(k)!r}; compare runs of one command")
    b_models = {m["name"]: m for m in b["models"]}
    rows = []
    for ma in a["models"]:
        mb = b_models.get(ma["name"])
        if mb is None:
            raise SystemExit(f"model {ma['name']!r} is in run A only: compare runs of one command")
        for label, path in FIGURES:
            fa, fb = figure(ma, path), figure(mb, path)
            if fa is None or fb is None:
                continue
            (m1, s1), (m2, s2) = fa, fb
            delta = abs(m1 - m2)
            sigma = math.hypot(s1, s2)
            rows.append({"model": ma["name"], "figure": label, "a_mean": m1, "a_std": s1,
                         "b_mean": m2, "b_std": s2, "abs_diff": delta,
                         "diff_sigma": sigma, "z": delta / sigma if sigma > 0 else None,
                         "agree": delta <= sigma,
                         "within_2_sigma": delta <= 2 * sigma,
                         "each_inside_other": delta <= min(s1, s2),
                         "bars_overlap": delta <= s1 + s2})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_a")
    ap.add_argument("run_b")
    ap.add_argument("--json", help="write the comparison here")
    args = ap.parse_args()
    a, b = (json.loads(Path(p).read_text()) for p in (args.run_a, args.run_b))
    for name, r in (("A", a), ("B", b)):
        if r.get("kind") != "offline" or not r.get("complete") or "settings" not in r:
            raise SystemExit(f"run {name} is not a complete offline `sllm bench --json` report")
    rows = compare(a, b)
    print(f"{'model':<12} {'figure':<15} {'run A':>16} {'run B':>16} {'|diff|':>7} "
          f"{'sigma':>6} agree")
    for r in rows:
        print(f"{r['model']:<12} {r['figure']:<15} "
              f"{r['a_mean']:>8.2f} ± {r['a_std']:<5.2f} {r['b_mean']:>8.2f} ± {r['b_std']:<5.2f} "
              f"{r['abs_diff']:>7.2f} {r['diff_sigma']:>6.2f} {'yes' if r['agree'] else 'NO'}")
    agreed = sum(r["agree"] for r in rows)
    two = sum(r["within_2_sigma"] for r in rows)
    print(f"{agreed} of {len(rows)} figures agree within one sigma of their difference, "
          f"{two} within two")
    if args.json:
        out = {**provenance.collect(), "run_a": args.run_a, "run_b": args.run_b,
               "run_a_provenance": a["provenance"], "run_b_provenance": b["provenance"],
               "criterion": "|mean_A - mean_B| <= sqrt(std_A^2 + std_B^2)",
               "figures_agreeing": agreed, "figures_within_2_sigma": two, "figures": len(rows),
               "rows": rows}
        tmp = Path(args.json + ".tmp")
        tmp.write_text(json.dumps(out, indent=1) + "\n")
        tmp.replace(args.json)
    return 0 if agreed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
