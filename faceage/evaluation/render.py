"""The bias report as text: markdown and one self-contained HTML page (figures embedded), and its summary lines."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def _num(value: Any, fmt: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return format(value, fmt)


def ci_text(ci: Sequence[float], fmt: str = ".2f") -> str:
    """A confidence interval as ``low–high`` (``–`` when there is none)."""
    return "–" if ci is None or math.isnan(ci[0]) else f"{ci[0]:{fmt}}–{ci[1]:{fmt}}"


AGE_COLUMNS = ("group", "n", "MAE", "MAE 95% CI", "CS@5", "CS@5 95% CI", "bias", "flag")
GENDER_COLUMNS = ("group", "n", "accuracy", "95% CI", "flag")
AGE_GROUP_COLUMNS = ("age group", "n", "inside", "years outside", "bias")
SENSITIVITY_COLUMNS = ("condition", "n", "MAE", "ΔMAE", "CS@5", "bias", "mean |shift|", "gender acc.")
COVERAGE_COLUMNS = ("group", "n", "coverage", "95% CI", "mean width")
DECISION_COLUMNS = ("group", "n minors", "FPR (minors pass)", "95% CI", "n adults", "referral (adults)", "95% CI")


def _assurance_sections(assurance: Mapping[str, Any] | None) -> list[tuple[str, Sequence[str], list[list[str]], list[bool]]]:
    out: list[tuple[str, Sequence[str], list[list[str]], list[bool]]] = []
    if not assurance:
        return out
    iv = assurance.get("intervals")
    if iv:
        rows = [{"factor": "", "group": "all", **iv["overall"]}, *iv["groups"]]
        cells = [[f"{r['factor']}: {r['group']}" if r["factor"] else "all", str(r["n"]), _num(r["coverage"], ".3f"),
                  ci_text(r["coverage_ci"], ".3f"), _num(r["width"], ".1f")] for r in rows]
        level = assurance.get("level")
        out.append((f"Interval coverage ({level:g} nominal)" if level else "Interval coverage", COVERAGE_COLUMNS, cells, [False] * len(cells)))
    for over, d in assurance.get("decisions", {}).items():
        for kind in ("policy", "challenge"):
            t = d.get(kind)
            if not t:
                continue
            rows = [{"factor": "", "group": "all", **t["overall"]}, *(r for r in t["groups"] if r["n_minors"] or r["n_adults"])]
            cells = [[f"{r['factor']}: {r['group']}" if r["factor"] else "all", str(r["n_minors"]), _num(r["fpr"], ".3f"), ci_text(r["fpr_ci"], ".3f"),
                      str(r["n_adults"]), _num(r["referral"], ".3f"), ci_text(r["referral_ci"], ".3f")] for r in rows]
            rule = f"P(age >= {over}) >= {t['threshold']:.4g}" if kind == "policy" else f"estimated age >= {t['age']:g}"
            lo, hi = t["minor_ages"]
            out.append((f"Over-{over} decisions: pass when {rule} (minors = ages {lo}-{hi}, adults = {t['adult_age']}+)", DECISION_COLUMNS, cells,
                        [False] * len(cells)))
    return out


def _age_cells(r: Mapping[str, Any]) -> list[str]:
    return [r["group"], str(r["n"]), _num(r["mae"]), ci_text(r["mae_ci"]), _num(r["cs@5"], ".3f"),
            ci_text(r["cs@5_ci"], ".3f"), _num(r["bias"], "+.2f"), "⚠ above overall" if r["flagged"] else ""]


def _gender_cells(r: Mapping[str, Any]) -> list[str]:
    return [r["group"], str(r["n"]), _num(r["accuracy"], ".3f"), ci_text(r["accuracy_ci"], ".3f"), "⚠ below overall" if r["flagged"] else ""]


def _sensitivity_cells(r: Mapping[str, Any], base_mae: float) -> list[str]:
    return [r["label"], str(r["n"]), _num(r["mae"]), _num(r["mae"] - base_mae, "+.2f"), _num(r["cs@5"], ".3f"),
            _num(r["bias"], "+.2f"), _num(r["mean_abs_shift"]), _num(r["gender_accuracy"], ".3f")]


def _race_metrics(report: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The race classification metrics when the model predicted race for faces of known race, else ``None``."""
    race = (report.get("metrics") or {}).get("race")
    return race if race and race.get("n") else None


def _sections(report: Mapping[str, Any]) -> list[tuple[str, Sequence[str], list[list[str]], list[bool]]]:
    """Every table of the report as ``(title, columns, rows of cells, flagged per row)``."""
    out = []
    o = report["overall"]
    if o is not None:
        out.append(("Overall", AGE_COLUMNS, [_age_cells({"group": "all", "flagged": False, **o})], [False]))
    out += _age_group_sections(report.get("age_groups"))
    for section, rows in report["groups"].items():
        out.append((f"Age error by {section}", AGE_COLUMNS, [_age_cells(r) for r in rows], [r["flagged"] for r in rows]))
    gender = report.get("gender")
    if gender:
        for section in ("by race", "by age band"):
            rows = [gender["overall"], *gender.get(section, [])]
            out.append((f"Gender accuracy {section}", GENDER_COLUMNS, [_gender_cells(r) for r in rows], [r["flagged"] for r in rows]))
    race = _race_metrics(report)
    if race:
        rows = [["all (accuracy)", str(race["n"]), f"{race['accuracy']:.3f}"]] + [
            [name, str(v["n"]), f"{v['recall']:.3f}"] for name, v in race["recall_by_class"].items()
        ]
        out.append(("Race classification (recall by true race)", ["group", "n", "accuracy / recall"], rows, [False] * len(rows)))
    sens = report.get("sensitivity")
    if sens:
        base = sens[0]["mae"]
        out.append(("Sensitivity to image changes", SENSITIVITY_COLUMNS, [_sensitivity_cells(r, base) for r in sens], [False] * len(sens)))
    out += _assurance_sections(report.get("assurance"))
    return out


def _age_group_sections(groups: Mapping[str, Any] | None) -> list[tuple[str, Sequence[str], list[list[str]], list[bool]]]:
    """The table of faces labelled with age groups (:func:`faceage.evaluation.age_groups.group_metrics`), if any."""
    if not groups:
        return []
    cells = lambda name, r: [name, str(r["n"]), f"{r['inside']:.3f}", f"{r['years_outside']:.2f}", f"{r['bias']:+.2f}"]
    rows = [cells("all", groups)] + [cells(name, r) for name, r in groups["by_group"].items()]
    return [("Age groups (predicted age inside the labelled group)", AGE_GROUP_COLUMNS, rows, [False] * len(rows))]


def age_group_line(groups: Mapping[str, Any] | None) -> list[str]:
    """The headline of the faces labelled with age groups, one line; none without them."""
    if not groups:
        return []
    return [(f"Age groups: {groups['inside']:.1%} of {groups['n']} faces predicted inside their group, "
             f"{groups['years_outside']:.2f} years outside on average, bias {groups['bias']:+.2f} years")]


def summary_lines(report: Mapping[str, Any]) -> list[str]:
    """The report's headline figures, one line each (what ``faceage report`` prints)."""
    o = report["overall"]
    lines = [
        f"Source: {report['source']}",
        f"Samples: {report['n']}" + (f" ({report['n_failed']} unreadable, left out)" if report["n_failed"] else ""),
    ]
    if o is not None:
        exact = f" ({o['n']} with an exact age)" if o["n"] != report["n"] else ""
        lines.append(f"Overall MAE {o['mae']:.2f} (95% CI {ci_text(o['mae_ci'])}), CS@5 {o['cs@5']:.3f}, bias {o['bias']:+.2f} years{exact}")
    lines += age_group_line(report.get("age_groups"))
    if report.get("gender"):
        g = report["gender"]["overall"]
        lines.append(f"Gender accuracy {g['accuracy']:.3f} (95% CI {ci_text(g['accuracy_ci'], '.3f')}, n={g['n']})")
    race = _race_metrics(report)
    if race:
        lines.append(f"Race accuracy {race['accuracy']:.3f} (balanced {race['balanced_accuracy']:.3f}, n={race['n']}); the race "
                     "output is for auditing errors by group, not for classifying people")
    lines += assurance_lines(report.get("assurance"))
    lines += report.get("notes", [])
    lines.append(
        f"A group is flagged when the lower end of its MAE 95% bootstrap CI ({report['n_boot']} resamples) is above the "
        f"overall MAE and it has at least {report['min_flag_n']} samples."
    )
    return lines


def assurance_lines(assurance: Mapping[str, Any] | None) -> list[str]:
    """The age-assurance figures (interval coverage, over-N error rates), one line each; none without them."""
    if not assurance:
        return []
    acc = ", ".join(f"Acc({k.split('@')[1]}) {v:.3f}" for k, v in assurance["acc"].items())
    lines = [f"MAE averaged over sex x age cells {_num(assurance['mae_cells']['mae_cells'])} ({assurance['mae_cells']['n_cells']} cells); {acc}"]
    iv = assurance.get("intervals")
    if iv:
        lines.append(f"Interval coverage {iv['overall']['coverage']:.3f} (nominal {_num(assurance.get('level'), 'g')}), mean width {iv['overall']['width']:.1f} years")
    for over, d in assurance.get("decisions", {}).items():
        for kind in ("policy", "challenge"):
            t = d.get(kind)
            if t and t["overall"]["fpr"] is not None:
                what = f"policy P(age >= {over}) >= {t['threshold']:.4g}" if kind == "policy" else f"challenge {t['age']:g}"
                lines.append(f"Over-{over} ({what}): {t['overall']['fpr']:.2%} of {t['overall']['n_minors']} faces aged "
                             f"{t['minor_ages'][0]}-{t['minor_ages'][1]} pass; {_num(t['overall']['referral'], '.1%')} of "
                             f"{t['overall']['n_adults']} aged {t['adult_age']}+ referred")
    return lines


def flag_lines(report: Mapping[str, Any]) -> list[str]:
    """One line per group whose error the report flags, with its confidence interval."""
    lines = [f"{r['section']}: {r['group']} — MAE {r['mae']:.2f} (CI {ci_text(r['mae_ci'])}, n={r['n']})" for r in report["flagged"]]
    if report.get("gender"):
        for section in ("by race", "by age band"):
            lines += [f"gender accuracy {section}: {r['group']} — {r['accuracy']:.3f} (CI {ci_text(r['accuracy_ci'], '.3f')}, n={r['n']})"
                      for r in report["gender"].get(section, []) if r["flagged"]]
    return lines


def render_markdown(report: Mapping[str, Any], figures: Mapping[str, Path] | None = None, base: Path | None = None) -> str:
    """The report as markdown; figures are linked by path relative to ``base``."""
    out = ["# faceage bias report", ""]
    out += [f"- {line}" for line in summary_lines(report)]
    flags = flag_lines(report)
    out += ["", "## Flagged groups", ""]
    out += [f"- ⚠ {line}" for line in flags] if flags else ["None: no group is significantly worse than overall."]
    for title, columns, rows, _ in _sections(report):
        out += ["", f"## {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        out += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    if figures:
        out += ["", "## Figures", ""]
        for title, path in figures.items():
            rel = Path(path).relative_to(base) if base else Path(path)
            out += [f"### {title}", "", f"![{title}]({rel.as_posix()})", ""]
    return "\n".join(out) + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}
tr.flag td{background:#fde2e1;font-weight:600}
.flags li{color:#a00}
img{max-width:100%;border:1px solid #ddd;margin:.5em 0}
details{margin-bottom:.5em}summary{cursor:pointer;font-weight:600}
"""


def _html_table(columns: Sequence[str], rows: list[list[str]], flags: list[bool]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        ("<tr class='flag'>" if flag else "<tr>") + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
        for row, flag in zip(rows, flags)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report: Mapping[str, Any], figures: Mapping[str, Path] | None = None, title: str = "faceage bias report") -> str:
    """The report as one self-contained HTML page: figures embedded as base64 PNG, no external resource."""
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1><ul>"]
    parts += [f"<li>{html.escape(line)}</li>" for line in summary_lines(report)]
    parts.append("</ul><h2>Flagged groups</h2>")
    flags = flag_lines(report)
    parts.append("<ul class='flags'>" + "".join(f"<li>⚠ {html.escape(line)}</li>" for line in flags) + "</ul>"
                 if flags else "<p>None: no group is significantly worse than overall.</p>")
    for name, columns, rows, row_flags in _sections(report):
        table = _html_table(columns, rows, row_flags)
        if "×" in name:  # crossings can be long: folded, opened when they hold a flagged group
            parts.append(f"<details{' open' if any(row_flags) else ''}><summary>{html.escape(name)}</summary>{table}</details>")
        else:
            parts.append(f"<h2>{html.escape(name)}</h2>{table}")
    if figures:
        parts.append("<h2>Figures</h2>")
        for caption, path in figures.items():
            data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
            parts.append(f"<h3>{html.escape(caption)}</h3><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)
