"""Every figure in docs/*.md comes from a result file: each markdown table that holds measured
numbers must have a reference to a bench/results/ file in the lines just before or after it (the
paragraph that introduces it, or the caption under it), every bench/results/ file the docs name
must exist, and each such result must carry its provenance (bench/provenance.py: command, date,
commit, machine with CPU model, cores and ISA, package versions; or, for the reports of
`sllm bench --json`, the same facts in their "provenance" object).

A table "holds measured numbers" when one of its body cells is a decimal number, a percentage or
a ratio (optionally signed, in bold or not; bare integers such as bit widths are specifications)
and its header has no "default" column
(option tables list defaults: specifications, not figures). References inside fenced code blocks
are a command's output paths (a result still to be produced): they neither count as the source of
a table nor need to exist.

    check_doc_results.py [REPO]    exit 1 listing every problem
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

# A measured figure: a decimal number, or a percentage or ratio (bare integers such as bit widths
# and block sizes are specifications).
NUMBER = re.compile(r"^[+-]?(\d{1,3}(,\d{3})+|\d+)((\.\d+)(e[+-]?\d+)?\s*(%|x|×)?|(\.\d+)?\s*(%|x|×))$",
                    re.I)
RESULT = re.compile(r"bench/results/[A-Za-z0-9_.\-/]+[A-Za-z0-9]")
WINDOW_BEFORE, WINDOW_AFTER = 15, 4  # lines searched around a table for its result reference
PROVENANCE = {"command": str, "date": str, "git": dict, "machine": dict, "versions": dict}
MACHINE = ("cpu_model", "cpu_count", "isa")


def prose_lines(lines: list[str]) -> list[str]:
    """lines with the content of fenced code blocks blanked (line numbers kept)."""
    out, fenced = [], False
    for ln in lines:
        if ln.lstrip().startswith("```"):
            fenced = not fenced
            out.append("")
        else:
            out.append("" if fenced else ln)
    return out


def tables(lines: list[str]):
    """(first line, last line, body rows as lists of cells) of each table, 0-based lines."""
    i = 0
    while i < len(lines):
        if lines[i].lstrip().startswith("|") and i + 1 < len(lines) and re.match(
                r"^\s*\|[\s:|-]+\|\s*$", lines[i + 1]):
            j = i + 2
            while j < len(lines) and lines[j].lstrip().startswith("|"):
                j += 1
            cells = lambda ln: [c.strip() for c in ln.strip().strip("|").split("|")]  # noqa: E731
            yield i, j - 1, cells(lines[i]), [cells(ln) for ln in lines[i + 2:j]]
            i = j
        else:
            i += 1


def numeric(cell: str) -> bool:
    c = cell.replace("**", "").replace("`", "").strip()
    return bool(NUMBER.match(c))


def from_sllm_bench(data: dict) -> dict:
    """The provenance of an `sllm bench --json` report, in bench/provenance.py's keys."""
    p = data.get("provenance")
    if not isinstance(p, dict) or "commit" not in p:
        return data
    m = p.get("machine") if isinstance(p.get("machine"), dict) else {}
    return {"command": p.get("command"), "date": p.get("date"),
            "git": {"commit": p.get("commit")} if p.get("commit") else None,
            "machine": {"cpu_model": m.get("cpu"), "cpu_count": m.get("cores"),
                        "isa": m.get("isa")},
            "versions": p.get("versions")}


def check_result(repo: Path, ref: str) -> list[str]:
    path = repo / ref
    if not path.is_file():
        return [f"{ref} does not exist"]
    src = path if path.suffix == ".json" else path.with_suffix(".json")
    if not src.is_file():
        return [f"{ref}: no {src.name} next to it with the run's provenance"]
    try:
        data = json.loads(src.read_text())
    except json.JSONDecodeError as e:
        return [f"{src.relative_to(repo)}: not JSON ({e})"]
    data = from_sllm_bench(data)
    problems = []
    for key, typ in PROVENANCE.items():
        if not isinstance(data.get(key), typ) or not data.get(key):
            problems.append(f"{src.relative_to(repo)}: provenance key '{key}' missing or empty")
    if isinstance(data.get("git"), dict) and not data["git"].get("commit"):
        problems.append(f"{src.relative_to(repo)}: git.commit missing")
    if isinstance(data.get("machine"), dict):
        for k in MACHINE:
            if data["machine"].get(k) in (None, "", {}):
                problems.append(f"{src.relative_to(repo)}: machine.{k} missing")
    return problems


def check(repo: Path) -> list[str]:
    problems: list[str] = []
    refs: set[str] = set()
    seen: set[str] = set()
    for doc in sorted((repo / "docs").glob("*.md")):
        lines = prose_lines(doc.read_text().splitlines())
        name = doc.relative_to(repo)
        for ln in lines:
            refs.update(RESULT.findall(ln))
        for first, last, header, rows in tables(lines):
            if any("default" in h.lower() for h in header):
                continue
            if not any(numeric(c) for row in rows for c in row):
                continue
            near = lines[max(0, first - WINDOW_BEFORE):first] + lines[last + 1:last + 1 + WINDOW_AFTER]
            if not any(RESULT.search(ln) for ln in near):
                problems.append(f"{name}:{first + 1}: a table of figures with no bench/results/ "
                                f"file named within {WINDOW_BEFORE} lines before or "
                                f"{WINDOW_AFTER} after it")
    for ref in sorted(refs):
        for p in check_result(repo, ref):
            if p not in seen:
                seen.add(p)
                problems.append(p)
    return problems


def self_test() -> list[str]:
    """The checker on a made-up tree: it must flag what it is meant to flag, and pass the rest."""
    import tempfile
    good = {"command": "x", "date": "d", "git": {"commit": "c"}, "versions": {"torch": "2"},
            "machine": {"cpu_model": "m", "cpu_count": 2, "isa": {"avx2": True}}}
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "docs").mkdir()
        (root / "bench/results").mkdir(parents=True)
        (root / "bench/results/good.json").write_text(json.dumps(good))
        (root / "bench/results/bare.json").write_text(json.dumps({"rows": []}))
        table = "| a | b |\n|---|---|\n| x | 12.5 |\n"
        (root / "docs/a.md").write_text(
            "Results: `bench/results/good.json`.\n\n" + table + "\n" + "text\n" * 20 + table +
            "\n```\nrun --json bench/results/later.json\n```\n" + "text\n" * 20 +
            "| key | default |\n|---|---|\n| lr | 0.5 |\n\nSee bench/results/bare.json.\n")
        got = check(root)
    expected = ["docs/a.md:27:", "bare.json: provenance key 'command'"]
    missing = [e for e in expected if not any(e in g for g in got)]
    unexpected = [g for g in got if "later.json" in g or "good.json" in g
                  or ("docs/a.md:" in g and "docs/a.md:27:" not in g)]
    return ([f"self-test: not flagged: {m}" for m in missing] +
            [f"self-test: wrongly flagged: {u}" for u in unexpected])


def main() -> int:
    repo = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2]
    problems = self_test() + check(repo)
    if problems:
        print(f"FAIL: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
        return 1
    print("OK: every table of figures in docs/ names a result file with its provenance")
    return 0


if __name__ == "__main__":
    sys.exit(main())
