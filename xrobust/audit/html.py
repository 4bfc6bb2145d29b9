"""A self-contained HTML report: figures embedded as base64 PNG, inline CSS, no scripts,
no external styles, fonts or images, and a Content-Security-Policy that forbids any
network request. Every string that comes from the user, the model or the data (class
names, feature names, titles, messages) goes through :func:`html.escape`.

Example:
    >>> from xrobust.audit.report import AuditReport
    >>> page = render_html(AuditReport(title="<script>x</script>"))
    >>> "<script>x" in page, "&lt;script&gt;x" in page
    (False, True)
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Callable
from typing import Any

from matplotlib.figure import Figure

from xrobust.audit import figures as F
from xrobust.audit.advice import explanation_checks, likely_cause, what_to_try
from xrobust.audit.markdown import count, headline, minimal_summary
from xrobust.audit.report import AuditReport, CheckResult, SectionResult
from xrobust.audit.section import Section

__all__ = [
    "adversarial_html",
    "clean_html",
    "corruption_html",
    "escape",
    "explanations_html",
    "figure",
    "render_html",
    "requirements_html",
    "sanity_html",
    "section_titles",
    "table",
]

log = logging.getLogger(__name__)

_CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0;color:#1d2733;background:#f6f7f9}
header{background:#1d2733;color:#fff;padding:18px 28px}
header h1{margin:0 0 6px 0;font-size:22px}
header p{margin:2px 0;color:#c9d1da;font-size:13px}
nav{background:#fff;border-bottom:1px solid #dde2e8;padding:8px 28px;font-size:14px}
nav a{margin-right:16px;color:#2457a6;text-decoration:none}
main{padding:12px 28px 40px 28px;max-width:1250px}
section{background:#fff;border:1px solid #dde2e8;border-radius:6px;padding:14px 20px;margin:16px 0}
h2{margin-top:4px;font-size:19px}
h3{font-size:15px;margin-bottom:6px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #dde2e8;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f2f5}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.verdict{display:inline-block;padding:4px 12px;border-radius:4px;font-weight:bold;margin-top:6px}
.pass{background:#d9f2de;color:#17632a}.fail{background:#fadcdc;color:#8a1c1c}
.warn{background:#fff1cc;color:#7a5a00}.skip{background:#e8eaee;color:#4a5360}
.incomplete,.not_evaluated{background:#e3e8fb;color:#25306b}
.missing{margin-top:6px;font-size:13px}.missing ul{margin:2px 0 0 18px;padding:0}
.bound{background:#fff8e6;border-left:3px solid #d9a400;padding:4px 8px;font-size:13px}
.badge{display:inline-block;padding:1px 8px;border-radius:3px;font-size:12px;font-weight:bold}
.figs{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}
figure{margin:0}figure img{max-width:100%;border:1px solid #eef0f3}
figcaption{font-size:12px;color:#56606b;max-width:560px}
.note{color:#56606b;font-size:13px}
.why{color:#56606b;font-size:12px}
.advice{font-size:13px;padding:6px 10px;margin:8px 0;border-left:3px solid #d9a400;background:#fff8e6}
.advice.fail{border-left-color:#c0392b;background:#fdf1f1}
details summary{cursor:pointer;font-weight:bold;margin:6px 0}
pre{background:#f6f7f9;padding:8px;font-size:12px;overflow:auto;max-height:360px}
"""

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return _e(v)


def _figure(make: Callable[[], Figure], caption: str, alt: str) -> str:
    try:
        fig = make()
        data = F.to_png_base64(fig)
    except Exception as exc:  # one broken figure must not lose the report
        log.warning("figure %r failed: %s", alt, exc, exc_info=True)
        return f'<p class="note">Figure "{_e(alt)}" could not be drawn: {_e(exc)}</p>'
    return (
        f'<figure><img alt="{_e(alt)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _table(head: list[str], rows: list[list[str]], raw: bool = False) -> str:
    """A table; cells are escaped unless ``raw`` (then the caller escaped them)."""
    h = "".join(f"<th>{_e(c)}</th>" for c in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{c if raw else _e(c)}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def _badge(status: str) -> str:
    return f'<span class="badge {_e(status)}">{_e(status.replace("_", " ").upper())}</span>'


def _names(report: AuditReport) -> list[str]:
    spec = report.dataset.get("spec", {})
    names = spec.get("class_names") or [str(i) for i in range(int(spec.get("num_classes", 0)))]
    return [str(n) for n in names]


# ---------------------------------------------------------------------- sections
def clean_html(s: SectionResult, report: AuditReport) -> str:
    d = s.data
    names = _names(report)
    pc = d["per_class"]
    rows = [
        [_e(n), _fmt(p, 3), _fmt(r, 3), _fmt(f, 3), count(sup)]
        for n, p, r, f, sup in zip(names, pc["precision"], pc["recall"], pc["f1"], pc["support"])
    ]
    cal = d["calibration"]
    out = [
        f"<p>Accuracy <b>{d['accuracy']:.4f}</b> on {count(d['n'])} test examples; negative log-likelihood "
        f"{d['nll']:.4f}; expected calibration error <b>{cal['ece']:.4f}</b> over {cal['bins']} bins "
        f"(maximum {cal['mce']:.4f}, mean confidence {cal['mean_confidence']:.4f}).</p>",
        '<div class="figs">',
        _figure(
            lambda: F.confusion(d["confusion_matrix"], names, "Confusion matrix"),
            "Rows: true class; columns: predicted class.",
            "confusion matrix",
        ),
        _figure(
            lambda: F.reliability_diagram(cal),
            "Accuracy per confidence bin; bars below the diagonal mean over-confidence.",
            "reliability diagram",
        ),
        "</div>",
        "<h3>Per class</h3>",
        _table(["class", "precision", "recall", "F1", "support"], rows, raw=True),
    ]
    return "".join(out)


def adversarial_html(s: SectionResult, report: AuditReport) -> str:
    d = s.data
    names = _names(report)
    out = [
        f"<p>{count(d['n'])} test examples attacked (clean accuracy on them {d['clean_accuracy']:.4f}) with "
        f"{_e(', '.join(d['attacks']))}. The worst case counts an example as robust only when "
        "every attack failed on it.</p>"
    ]
    for norm, nd in d["norms"].items():
        out.append(f"<h3>{_e(nd.get('label') or norm)} threat model</h3>")
        out.append(_curve_table(nd))
        out += _threat_figures(norm, nd, d["clean_accuracy"], names)
    return "".join(out)


def _curve_table(nd: dict[str, Any]) -> str:
    """One threat model's robust accuracy per attack and eps, what each figure is, which
    attack broke the examples, and the options and times of the attacks."""
    head = nd["headline_eps"]
    out: list[str] = []
    # "what it is" per row only when the rows differ in kind (white-box and query-only);
    # when every figure is a white-box measurement one sentence says so
    kinds = {entry.get("bound") for entry in nd["curves"].values()}
    per_row = kinds != {"measured"}
    rows = []
    for a, entry in nd["curves"].items():
        name = "worst case" if a == "worst" else a
        at = dict(zip(entry["eps"], entry["robust_accuracy"]))
        what = [_e(_bound_words(entry))] if per_row else []
        rows.append([_e(name), *what] + [_fmt(at[e]) if e in at else "–" for e in nd["eps"]])
    what_head = ["what it is"] if per_row else []
    out.append(
        _table(["attack \\ eps", *what_head, *[f"{e:g}" for e in nd["eps"]]], rows, raw=True)
    )
    if not per_row:
        out.append(
            '<p class="note">Every figure is a measurement by white-box (gradient) attacks, '
            "not a bound.</p>"
        )
    if nd.get("bound") == "upper":
        out.append(
            '<p class="bound">These robust accuracies are <b>upper bounds</b>: '
            f"{_e(nd.get('bound_note', 'query-only attacks'))}. A stronger evaluation "
            "(white-box, at AutoAttack's strength) can find adversarial examples these attacks "
            "did not.</p>"
        )
    broken = nd.get("broken_by") or {}
    if broken:
        parts = ", ".join(f"{_e(a)}: {k}" for a, k in sorted(broken.items(), key=lambda t: -t[1]))
        out.append(
            f"<p>At eps {head:g} the worst case's adversarial examples were found by "
            f"{parts} (the first attack, in the order listed, that broke each example).</p>"
        )
    out.append(_options_table(nd.get("attack_options") or {}, nd.get("seconds") or {}))
    return "".join(out)


def _options_table(options: dict[str, dict[str, Any]], seconds: dict[str, Any]) -> str:
    """The attacks' options and times as a small table: options shared by every attack
    once above it, each attack's own options (as its TOML table would set them) and its
    time in a row."""
    names = list(dict.fromkeys([*options, *seconds]))
    if not names:
        return ""
    shared = _shared_options([options.get(a) or {} for a in names])
    rows = [
        [
            _e(a),
            _e(_option_text({k: v for k, v in (options.get(a) or {}).items() if k not in shared})),
            _seconds(seconds.get(a)),
        ]
        for a in names
    ]
    common = f" Every attack: {_e(_option_text(shared))}." if shared else ""
    return f'<p class="note">Attack options and time.{common}</p>' + _table(
        ["attack", "its options", "time"], rows, raw=True
    )


def _shared_options(options: list[dict[str, Any]]) -> dict[str, Any]:
    """The options every attack of ``options`` sets to the same value (when more than one)."""
    if len(options) < 2:
        return {}
    first = options[0]
    return {k: v for k, v in first.items() if all(k in o and o[k] == v for o in options[1:])}


def _option_text(options: dict[str, Any]) -> str:
    """``steps = 20, early_stop = true``: options as a TOML table writes them."""
    if not options:
        return "defaults"
    return ", ".join(f"{k} = {_toml_value(v)}" for k, v in options.items())


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(i) for i in v) + "]"
    if isinstance(v, str):
        return json.dumps(v)
    return str(v)


def _seconds(v: Any) -> str:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return "–"
    return f"{v:.2f} s" if v < 10 else f"{v:,.1f} s"


def _threat_figures(
    norm: str, nd: dict[str, Any], clean_accuracy: float, names: list[str]
) -> list[str]:
    """One threat model's figures (curves, per class, flips, queries, minimal perturbation)
    and its most vulnerable examples."""
    head = nd["headline_eps"]
    out: list[str] = []
    figs = [
        _figure(
            lambda nd=nd, norm=norm: F.robustness_curves(nd, clean_accuracy, norm),
            f"Accuracy against eps; the dotted line marks the headline eps {head:g}.",
            f"robustness curve {norm}",
        ),
        _figure(
            lambda nd=nd, norm=norm, head=head: F.per_class_bars(
                nd["per_class"], names, head, norm
            ),
            f"Per-class clean and worst-case robust accuracy at eps {head:g}.",
            f"per-class {norm}",
        ),
        _figure(
            lambda nd=nd, head=head: F.confusion(
                nd["confusion"]["matrix"],
                names,
                f"Flips at eps={head:g}",
                "adversarial prediction",
                "clean prediction",
            ),
            "Clean against worst-case adversarial predictions (the diagonal kept its prediction).",
            f"flip matrix {norm}",
        ),
    ]
    qc = nd.get("query_curves") or {}
    if qc:
        figs.append(_query_figure(qc, clean_accuracy, norm))
    mp = nd.get("minimal_perturbation")
    if mp:
        figs.append(
            _figure(
                lambda mp=mp, norm=norm: F.minimal_perturbation_hist(mp, norm),
                f"Each example's smallest fooling eps ({_e(mp['method'])}). Median "
                f"{_e(minimal_summary(mp))}.",
                f"minimal perturbation {norm}",
            )
        )
    out.append('<div class="figs">' + "".join(figs) + "</div>")
    out += _vulnerable(nd.get("vulnerable") or [], names, norm)
    return out


def _query_figure(qc: dict[str, Any], clean_accuracy: float, norm: str) -> str:
    """Robust accuracy against the queries spent per example, per query-only attack."""
    medians = ", ".join(
        f"{_e(a)} {c['median_queries_successful']:g}"
        for a, c in qc.items()
        if c.get("median_queries_successful") is not None
    )
    return _figure(
        lambda: F.query_curves(qc, clean_accuracy, norm),
        "Robust accuracy against the queries an attacker spends per example "
        f"(median for successful examples: {medians}).",
        f"queries {norm}",
    )


def _vulnerable(vul: list[dict[str, Any]], names: list[str], norm: str) -> list[str]:
    """The most vulnerable examples: their images (when stored) and a table."""
    out: list[str] = []
    if vul and "x" in vul[0]:
        out.append(
            _figure(
                lambda vul=vul: F.vulnerable_examples(vul, names),
                f"The {len(vul)} most vulnerable examples (smallest fooling eps): "
                "clean, adversarial and perturbation.",
                f"vulnerable examples {norm}",
            )
        )
    if not vul:
        return out
    # the perturbation's own norm is shown only where it differs from its eps (an L2 step
    # that stops inside the ball); on the eps sphere the two columns would repeat
    apart = [r for r in vul if not _close(r["perturbation_norm"], r["eps"])]
    head = ["example", "label", "adversarial prediction", "minimal eps"]
    head += ["perturbation norm"] if apart else []
    rows = [
        [str(r["index"]), _e(names[r["label"]]), _e(names[r["pred_adv"]]), _fmt(r["eps"])]
        + ([_fmt(r["perturbation_norm"])] if apart else [])
        + [_e(r.get("attack", ""))]
        for r in vul
    ]
    out.append(_table([*head, "attack"], rows, raw=True))
    if not apart:
        out.append(
            '<p class="note">Each perturbation uses its whole budget: its norm equals the '
            "minimal eps (within 1%).</p>"
        )
    return out


def _close(a: Any, b: Any, rel: float = 0.01) -> bool:
    """Whether two numbers agree within ``rel`` of the larger (None counts as unequal)."""
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return False
    return abs(a - b) <= rel * max(abs(a), abs(b))


def corruption_html(s: SectionResult, report: AuditReport) -> str:
    d = s.data
    rows = [
        [_e(n), *[_fmt(a) for a in r["accuracy"]], _fmt(r["mean_accuracy"]), _e(r["description"])]
        for n, r in d["corruptions"].items()
    ]
    out = [
        f"<p>{count(d['n'])} test examples (clean accuracy {d['clean_accuracy']:.4f}); mean accuracy over "
        f"corruptions and severities <b>{_fmt(d.get('mean_corruption_accuracy'))}</b>.</p>",
        _table(
            ["corruption", *[f"severity {v}" for v in d["severities"]], "mean", "what"],
            rows,
            raw=True,
        ),
        *[f'<p class="note">{_e(n)}</p>' for n in d.get("notes", [])],
    ]
    if not d["corruptions"]:  # the query budget ran out before the first corruption finished
        out.append('<p class="note">No corruption finished: nothing to plot.</p>')
        return "".join(out)
    out += [
        '<div class="figs">',
        _figure(lambda: F.corruption_curves(d), "Accuracy against severity.", "corruption curves"),
    ]
    if d.get("example") and d["example"].get("corrupted"):
        out.append(
            _figure(
                lambda: F.corruption_examples(d["example"], d["severities"]),
                "One test image under every corruption and severity.",
                "corruption examples",
            )
        )
    out.append("</div>")
    return "".join(out)


def explanations_html(s: SectionResult, report: AuditReport) -> str:
    d = s.data
    names = _names(report)
    if not d.get("methods"):
        return f'<p class="note">{_e(d.get("note", "nothing to show"))}</p>'
    out = [
        f"<p>{d['n']} correctly classified examples"
        + (
            f", and their adversarial versions ({_e(d['attack'])}, {_e(d['norm'])} eps={d['eps']:g})"
            if d.get("attack")
            else ""
        )
        + f"; metrics over {d['n_metrics']} examples.</p>"
    ]
    for note in d.get("notes", []):
        out.append(f'<p class="note">{_e(note)}</p>')
    spec = report.dataset.get("spec", {})
    if spec.get("modality") == "image" and d["examples"] and "x" in d["examples"][0]:
        out.append(
            _figure(
                lambda: F.explanation_grid(d, names),
                "Left: clean input and its attributions (target: true class). Right: "
                "adversarial input and its attributions (target: the fooled prediction). "
                "Red: evidence for the target, blue: against.",
                "explanations",
            )
        )
    elif spec.get("modality") == "tabular":
        out.append(
            _figure(
                lambda: F.tabular_explanations(d, d.get("feature_names")),
                "Mean absolute attribution per feature, clean and adversarial.",
                "tabular explanations",
            )
        )
    out.append(_explanation_metrics(d["methods"]))
    notes = [
        f"{m}: {md['metrics_note']}" for m, md in d["methods"].items() if md.get("metrics_note")
    ]
    for n in notes:
        out.append(f'<p class="note">{_e(n)}</p>')
    out += [
        _advice(c, "randomisation check of " + c.details["method"])
        for c in explanation_checks(report)
        if c.status in ("warn", "fail")
    ]
    return "".join(out)


def _explanation_metrics(methods: dict[str, Any]) -> str:
    """Per method: deletion/insertion AUC beside random, the randomisation check, and the
    attributions' shift under attack."""
    rows = []
    for m, md in methods.items():
        di = md.get("deletion_insertion") or {}
        rz = md.get("randomisation") or {}
        st = md.get("stability") or {}
        check = (
            (_badge(rz["status"]) + " " + _e(rz.get("message", "")))
            if rz.get("status")
            else _e(rz.get("reason", "–"))
        )
        rows.append(
            [_e(m)]
            + [_fmt(di.get(k)) for k in ("deletion_auc", "random_deletion_auc")]
            + [_fmt(di.get(k)) for k in ("insertion_auc", "random_insertion_auc")]
            + [check, _fmt(st.get("topk_overlap")), _fmt(st.get("spearman"))]
        )
    head = ["method", "deletion AUC ↓", "random", "insertion AUC ↑", "random"]
    head += ["randomisation check", "top-k overlap (clean vs adv)", "rank correlation"]
    return _table(head, rows, raw=True)


def _advice(c: CheckResult, title: str) -> str:
    """A check that warned or failed, where it is shown: what it measured, what the check
    means, why it can fail here and what to try."""
    parts = [f"{_badge(c.status)} <b>{_e(title)}</b>: {_e(c.message)}."]
    if c.why:
        parts.append(f"<br><i>What it checks</i>: {_e(c.why)}")
    cause = likely_cause(c)
    if cause:
        parts.append(f"<br><i>Why it can fail here</i>: {_e(cause)}")
    tip = what_to_try(c)
    if tip:
        parts.append(f"<br><i>What to try</i>: {_e(tip)}")
    return f'<div class="advice {_e(c.status)}">{"".join(parts)}</div>'


def _checks(checks: list[CheckResult], why_label: str) -> str:
    """A table of checks; a "what to try" column when any of them warned or failed."""
    tips = [what_to_try(c) for c in checks]
    rows = [
        [
            _badge(c.status),
            f"<code>{_e(c.name)}</code>",
            _e(c.message),
            f'<span class="why">{_e(c.why)}</span>',
        ]
        + ([_e(tip)] if any(tips) else [])
        for c, tip in zip(checks, tips)
    ]
    head = ["status", "check", "result", why_label] + (["what to try"] if any(tips) else [])
    return _table(head, rows, raw=True)


def sanity_html(s: SectionResult, report: AuditReport) -> str:
    return (
        f"<p>After Carlini et al. (arXiv:1902.06705) and AutoAttack: signs that the robustness "
        f"numbers above are inflated by gradient masking or a broken evaluation "
        f"({s.data.get('n', '?')} examples).</p>" + _checks(report.sanity_checks, "why it matters")
    )


def requirements_html(s: SectionResult, report: AuditReport) -> str:
    if not report.requirements:
        return '<p class="note">No requirement configured.</p>'
    return _checks(report.requirements, "requirement")


#: the helpers a section's :meth:`~xrobust.audit.section.Section.html` builds with
escape, table, figure = _e, _table, _figure


def _shown(report: AuditReport) -> list[Section]:
    """The sections the page shows, in report order: every registered one that is always
    shown or ran, then any the report holds that this installation does not know."""
    from xrobust.audit.section import list_sections, report_order

    shown = [c() for c in report_order() if c.always_shown or c.name in report.sections]
    known = set(list_sections())
    return shown + [_Unknown(n) for n in report.sections if n not in known]


class _Unknown(Section):
    """A section of a report whose section is not registered here: its data as a table."""

    def __init__(self, name: str) -> None:
        self.name = name  # type: ignore[misc]


def section_titles(report: AuditReport) -> dict[str, str]:
    """The shown sections' headings, numbered in report order ("1. Clean performance")."""
    return _numbered(_shown(report))


def _numbered(shown: list[Section]) -> dict[str, str]:
    return {s.name: f"{i}. {s.title or s.name}" for i, s in enumerate(shown, 1)}


def _section(section: Section, title: str, report: AuditReport) -> str:
    name = section.name
    s = report.section(name)
    head = f'<section id="{_e(name)}" data-status="{_e(s.status)}"><h2>{_e(title)}</h2>'
    skipped = _skipped_parts(s)
    if s.status not in ("ok", "partial") or (s.status == "partial" and not s.data):
        word = {
            "skipped": "Skipped",
            "not_available": "Not available",
            "error": "Error",
            "partial": "Stopped by the query budget",
        }.get(s.status, s.status)
        note = f'<p class="note"><b>{_e(word)}</b>: {_e(s.reason)}</p>'
        return head + note + skipped + "</section>"
    if s.status == "partial":
        head += (
            f'<p class="note"><b>Partial</b>: {_e(s.reason)}. The figures below cover what ran.</p>'
        )
    try:
        body = section.html(s, report)
    except Exception as exc:  # a malformed section must not lose the rest of the report
        log.warning("rendering section %s failed", name, exc_info=True)
        body = f'<p class="note">This section could not be rendered: {_e(type(exc).__name__)}: {_e(exc)}</p>'
    queries = f", {count(s.queries)} model queries" if s.queries else ""
    foot = f'<p class="note">Section time {s.seconds:.1f} s{queries}.</p>'
    return head + body + skipped + foot + "</section>"


def _bound_words(entry: dict[str, Any]) -> str:
    if entry.get("bound") == "upper":
        return "upper bound (" + str(entry.get("bound_note", "query-only")) + ")"
    if entry.get("bound") == "measured":
        return "measured (" + str(entry.get("bound_note", "white-box")) + ")"
    return ""


def _skipped_parts(s: Any) -> str:
    """The parts of a section that did not run (a black box: no gradients), and why."""
    if not s.skipped_parts:
        return ""
    rows = [[p.get("part", "?"), p.get("reason", "")] for p in s.skipped_parts]
    return "<h3>Not run</h3>" + _table(["part", "why"], rows)


def _missing(missing: list[str]) -> str:
    """What keeps an incomplete audit from a verdict, listed under the headline."""
    if not missing:
        return ""
    items = "".join(f"<li>{_e(m)}</li>" for m in missing)
    return f'<div class="missing" id="missing"><p>Missing evidence:</p><ul>{items}</ul></div>'


def _attention(report: AuditReport, titles: dict[str, str]) -> str:
    """Under the summary: every check that warned or failed, linked to where it is
    explained, so that the headline's counts and the body name the same checks."""
    where = [
        *[(c, c.name, "sanity", "") for c in report.sanity_checks],
        *[
            (c, f"randomisation check of {c.details['method']}", "explanations", ", not required")
            for c in explanation_checks(report)
        ],
        *[(c, c.name, "requirements", "") for c in report.requirements],
    ]
    items = [
        f'<li>{_badge(c.status)} <a href="#{sec}">{_e(label)}</a> '
        f"({_e(titles.get(sec, sec))}{_e(extra)}): {_e(c.message)}</li>"
        for c, label, sec, extra in where
        if c.status in ("warn", "fail")
    ]
    if not items:
        return ""
    return f'<div class="missing"><p>Warnings and failures, explained in their sections:</p><ul>{"".join(items)}</ul></div>'


def _details(report: AuditReport) -> str:
    """Seeds, versions, environment and timings as small tables; the full configuration,
    model and dataset description folded away as JSON."""

    def pairs(d: dict[str, Any]) -> list[list[str]]:
        return [[str(k), _plain(v)] for k, v in d.items()]

    timings = [[k, _seconds(v)] for k, v in report.timings.items()]
    full = json.dumps(
        {"config": report.config, "model": report.model, "dataset": report.dataset}, indent=1
    )
    tables = [
        ("Seeds", _table(["seed", "value"], pairs(report.seeds))),
        ("Versions", _table(["package", "version"], pairs(report.versions))),
        ("Environment", _table(["setting", "value"], pairs(report.environment))),
        ("Timings", _table(["section", "time"], timings)),
    ]
    blocks = "".join(f"<div><h3>{t}</h3>{tab}</div>" for t, tab in tables)
    return (
        '<section id="details"><h2>Configuration, seeds, versions, timings</h2>'
        f'<div class="figs">{blocks}</div>'
        "<details><summary>Full configuration, model and dataset (JSON)</summary>"
        f"<pre>{_e(full)}</pre></details></section>"
    )


def _plain(v: Any) -> str:
    """A value for a details table: numbers with separators, lists joined, the rest as text."""
    if isinstance(v, bool) or v is None:
        return str(v).lower() if v is not None else "–"
    if isinstance(v, int):
        return count(v)
    if isinstance(v, (list, tuple)):
        return ", ".join(_plain(i) for i in v)
    if isinstance(v, dict):
        return "; ".join(f"{k} {_plain(i)}" for k, i in v.items())
    return str(v)


def render_html(report: AuditReport) -> str:
    """The whole report as one self-contained HTML page."""
    from xrobust.audit.markdown import verdict_line

    verdict = {"passed": "pass", "failed": "fail", "incomplete": "incomplete"}[report.verdict]
    verdict_text = verdict_line(report)
    missing = report.missing_evidence() if report.verdict == "incomplete" else []
    spec = report.dataset.get("spec", {})
    meta = (
        f"Model {_e(report.model.get('name', report.model.get('class', '?')))} "
        + (
            f"({count(report.model['parameters'])} parameters)"
            if "parameters" in report.model
            else f"(a black box: {_e((report.model.get('classifier') or {}).get('source', '?'))})"
        )
        + f" on {_e(spec.get('name', '?'))}; "
        f"xrobust {_e(report.xrobust_version)}; {_e(report.created)}; "
        f"{report.timings.get('total', 0):.1f} s on {_e(report.environment.get('device', '?'))}"
        f" ({_e(report.environment.get('world_size', 1))} process(es))."
    )
    q = report.queries or {}
    if q.get("total"):
        src = (report.model.get("classifier") or {}).get("source", "")
        budget = f" of a budget of {count(q['budget'])}" if q.get("budget") else ""
        meta += f" {_e(src)} model asked about {count(int(q['total']))} rows{_e(budget)}."
    shown = _shown(report)
    titles = _numbered(shown)
    nav = "".join(f'<a href="#{k}">{_e(t)}</a>' for k, t in titles.items())
    summary = _table(["measure", "value"], [[k, v] for k, v in headline(report)])
    summary += _attention(report, titles)
    body = "".join(_section(s, titles[s.name], report) for s in shown)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(report.title)}</title><style>{_CSS}</style></head>
<body>
<header><h1>{_e(report.title)}</h1><p>{meta}</p>
<div class="verdict {verdict}" id="verdict">{_e(verdict_text.split(":")[0])}</div>{_missing(missing)}</header>
<nav>{nav}<a href="#details">Details</a></nav>
<main>
<section id="summary"><h2>Summary</h2>{summary}</section>
{body}
{_details(report)}
</main></body></html>
"""
