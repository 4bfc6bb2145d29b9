"""The "deployed beside its source" section in the HTML report and the Markdown summary
(:mod:`xrobust.audit.sections.deployed` computes it; ``html.py`` and ``markdown.py`` call
these two functions)."""

from __future__ import annotations

from typing import Any

__all__ = ["TITLE", "html_body", "markdown_rows"]

TITLE = "7. Deployed model beside its source"


def _name(facts: dict[str, Any]) -> str:
    q = " (quantized)" if facts.get("quantized") else ""
    return f"{facts.get('name', '?')} [{facts.get('source', '?')}]{q}"


def _rows(d: dict[str, Any]) -> list[list[str]]:
    """(measure, deployed, source, what it is) rows of the section's figures."""
    c, r = d["clean"], d["robust"]
    rows = [
        ["clean accuracy", f"{c['deployed']:.4f}", f"{c['source']:.4f}", "measured"],
        ["agreement of predictions", f"{c['agreement']:.4f}", "", "measured"],
        [
            f"robust accuracy, {r['attack']} ({d['norm']} eps={d['eps']:g})",
            f"{r['deployed']:.4f}",
            f"{r['source']:.4f}",
            f"upper bound: {r['bound_note']}",
        ],
    ]
    w, t = d.get("white_box"), d.get("transfer")
    if w:
        rows.append(
            [f"robust accuracy, white-box {w['attack']}", "", f"{w['source']:.4f}",
             f"{w['bound']}: {w['bound_note']}"]
        )  # fmt: skip
    if t:
        rate = "–" if t["transfer_rate"] is None else f"{t['transfer_rate']:.4f}"
        rows.append(
            [f"accuracy on the source's {t['attack']} examples (transfer)", f"{t['deployed']:.4f}",
             f"{t['source_white_box']:.4f}", f"upper bound; transfer rate {rate} "
             f"({t['also_fool_deployed']} of {t['source_fooled']} examples that fool the source)"]
        )  # fmt: skip
    return rows


def html_body(s: Any, report: Any) -> str:
    """The section's HTML: the models, the figures, the findings and the rule."""
    from xrobust.audit.html import _e, _table

    d = s.data
    intro = (
        f"<p>The audited (deployed) model <b>{_e(_name(d['deployed']))}</b> beside its source "
        f"<b>{_e(_name(d['source']))}</b>, on the same {int(d['n'])} examples.</p>"
    )
    table = _table(["measure", "deployed", "source", "what it is"], _rows(d))
    items = "".join(f"<li>{_e(f['text'])}</li>" for f in d.get("findings", []))
    return (
        intro + table + f"<p><b>{_e(d.get('summary', ''))}</b></p><ul>{items}</ul>"
        f'<p class="note">Rule: {_e(d.get("rule", ""))}. The source was asked about '
        f"{int(d.get('source_queries', 0))} rows.</p>"
    )


def markdown_rows(report: Any) -> list[tuple[str, str]]:
    """Headline rows for the summary table (none when the section did not run)."""
    s = report.sections.get("deployed")
    if s is None or not s.ok:
        return []
    d = s.data
    c, r = d["clean"], d["robust"]
    rows = [
        ("Deployed vs source, clean accuracy",
         f"{c['deployed']:.4f} vs {c['source']:.4f} (agreement {c['agreement']:.4f}, n={d['n']})"),
        (f"Deployed vs source, robust accuracy ({r['attack']}, {d['norm']} eps={d['eps']:g})",
         f"at most {r['deployed']:.4f} vs at most {r['source']:.4f} (upper bounds)"),
    ]  # fmt: skip
    t = d.get("transfer")
    if t:
        rows.append(
            (f"Deployed on the source's white-box {t['attack']} examples",
             f"at most {t['deployed']:.4f} (the source itself: {t['source_white_box']:.4f}, "
             "measured)")
        )  # fmt: skip
    rows.append(("Deployed vs source", d.get("summary", "")))
    return rows
