"""The report reads like a finished product (issue 19 item 5): eps labels equal the values
that ran, options and timings as tables, the raw configuration folded away, full figure
titles, one column per distinct number, every FAIL and WARN explained and counted in the
headline, thousands separators, Markdown without HTML entities, no third-party log noise."""

from __future__ import annotations

import copy
import html as _html
import itertools
import json
import math
import re
from collections import Counter

import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg

from xrobust.audit import AuditConfig, AuditReport, audit
from xrobust.audit._runtime import default_eps
from xrobust.audit.html import render_html
from xrobust.audit.markdown import headline, render_markdown
from xrobust.audit.report import CheckResult
from xrobust.data.spec import DatasetSpec


def _spec(modality: str, shape: tuple[int, ...], bounds: tuple[float, float]) -> DatasetSpec:
    return DatasetSpec(
        name="t",
        modality=modality,
        input_shape=shape,
        num_classes=2,
        class_names=("a", "b"),
        bounds=bounds,
    )


def test_derived_eps_has_two_significant_figures() -> None:
    # the breast-cancer demo: standardised features with a median spread just under 1 gave
    # "eps=0.0999" and "l2 eps=0.342" before
    tab = _spec("tabular", (30,), (-4.0, 16.0))
    std = torch.full((30,), 0.9993)
    assert default_eps(tab, "linf", std) == [0.05, 0.1, 0.25, 0.5]
    img = _spec("image", (1, 28, 28), (0.0, 1.0))
    for spec, s in ((tab, std), (img, None)):
        for norm in ("linf", "l2"):
            for e in default_eps(spec, norm, s):
                assert float(f"{e:.2g}") == e and f"{e:g}" == f"{e:.2g}", (norm, e)
                assert e > 0 and math.isfinite(e)


# ------------------------------------------------------------------ a small real audit
SMALL = {
    "batch_size": 64,
    "clean": {"n": 120},
    "adversarial": {
        "n": 16,
        "attacks": ["fgsm", "pgd"],
        "eps": {"linf": [0.05, 0.2]},
        "norms": ["linf"],
        "steps": 5,
        "bisection_steps": 3,
        "n_vulnerable": 3,
    },
    "corruption": {"enabled": False},
    "explanations": {
        "n": 2,
        "n_metrics": 4,
        "methods": ["saliency", "integrated_gradients"],
        "stability": False,
        "deletion_insertion": False,
    },
    "sanity": {"n": 16, "convergence_factor": 2},
    "requirements": {"min_clean_accuracy": 0.5, "max_ece": 0.001},
}


@pytest.fixture(scope="module")
def small(digits28, digits_cnn) -> AuditReport:
    from test_audit_report import digits_bundle

    return audit(digits_cnn, digits_bundle(digits28), AuditConfig.from_dict(SMALL))


def _section(page: str, sid: str) -> str:
    m = re.search(rf'<section id="{sid}"[^>]*>.*?</section>', page, flags=re.S)
    assert m, sid
    return m.group(0)


def _tables(fragment: str) -> str:
    return "".join(re.findall(r"<table>.*?</table>", fragment, flags=re.S))


def test_no_raw_json_outside_details(small: AuditReport) -> None:
    page = render_html(small)
    outside = re.sub(r"<details>.*?</details>", "", page, flags=re.S)
    # the old report: "Options: {"norm": ...}. Seconds: {"fgsm": 0.14}" and a raw config dump
    assert "{&quot;" not in outside and '{"' not in outside
    assert "Options:" not in outside and "Seconds:" not in outside
    adv = _section(page, "adversarial")
    assert "<th>its options</th>" in adv and "<td>steps = 5</td>" in adv
    assert "Every attack: norm = &quot;linf&quot;, bounds = [0, 1]" in adv
    # the configuration is kept, folded away, and the seeds and versions are small tables
    folded = re.search(r"<details><summary>[^<]+</summary><pre>(.*?)</pre></details>", page, re.S)
    assert folded and json.loads(_html.unescape(folded.group(1)))["config"]["seed"] == 0
    details = _section(page, "details")
    assert "<td>torch</td>" in details and f"<td>{torch.__version__}</td>" in details


def test_thousands_separators(small: AuditReport) -> None:
    page = render_html(small)
    total, params = int(small.queries["total"]), int(small.model["parameters"])
    assert total >= 1000 and params >= 1000
    assert f"asked about {total:,} rows" in page and f"{total} rows" not in page
    assert f"({params:,} parameters)" in page


def test_markdown_shows_comparisons_without_entities(small: AuditReport) -> None:
    md = render_markdown(small)
    assert "&gt;" not in md and "&lt;" not in md and "&amp;" not in md
    assert ">= required 0.5" in md and "> allowed 0.001" in md


def _counts(value: str) -> dict[str, int]:
    return {
        s.replace(" ", "_"): int(k)
        for k, s in re.findall(r"(\d+) (pass|warn|fail|skip|not evaluated)", value)
    }


def test_headline_counts_agree_with_the_badges(small: AuditReport) -> None:
    page = render_html(small)
    rows = dict(headline(small))
    # a real case: integrated gradients fails the randomisation check on this CNN (zero
    # background pixels keep zero attribution whatever the weights)
    assert "fail" in _counts(rows["Explanation checks"]), rows
    assert rows["Explanation checks"].endswith("(not required)")
    for label, sid in (
        ("Sanity checks", "sanity"),
        ("Explanation checks", "explanations"),
        ("Requirements", "requirements"),
    ):
        badges = re.findall(r'<span class="badge (\w+)">', _tables(_section(page, sid)))
        assert _counts(rows[label]) == dict(Counter(badges)), (label, rows[label], badges)
    # each FAIL or WARN is explained where it is shown, and listed under the summary
    ex = _section(page, "explanations")
    assert '<div class="advice fail">' in ex and "What to try" in ex
    assert "xrobust explain --method integrated_gradients" in ex
    assert "multiplies the gradients by the input" in ex
    summary = _section(page, "summary")
    assert 'href="#explanations">randomisation check of integrated_gradients' in summary
    assert 'href="#requirements">max_ece' in summary
    req = _section(page, "requirements")
    assert "<th>what to try</th>" in req and "temperature scaling" in req
    md = render_markdown(small)
    assert "❌ `randomisation[integrated_gradients]`: integrated_gradients multiplies" in md


def test_html_is_deterministic_from_json(small: AuditReport) -> None:
    back = AuditReport.from_dict(json.loads(small.to_json()))
    assert render_html(back) == render_html(small)


def test_vulnerable_table_repeats_no_column(small: AuditReport) -> None:
    r = copy.deepcopy(small)
    vul = r.sections["adversarial"].data["norms"]["linf"]["vulnerable"]
    assert vul
    for row in vul:  # every perturbation on its eps sphere: one column
        row["perturbation_norm"] = row["eps"]
    adv = _section(render_html(r), "adversarial")
    assert "<th>minimal eps</th>" in adv and "<th>perturbation norm</th>" not in adv
    assert "its norm equals the minimal eps" in adv
    vul[0]["perturbation_norm"] = vul[0]["eps"] / 2  # one well inside its ball: both shown
    adv = _section(render_html(r), "adversarial")
    assert "<th>perturbation norm</th>" in adv


# ------------------------------------------------------------------ figures
def _drawn(fig):
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def test_explanation_titles_are_whole_and_do_not_collide() -> None:
    from xrobust.audit.figures import explanation_grid

    img = [[0.0, 1.0], [1.0, 0.0]]
    data = {
        "examples": [{"x": img, "x_adv": img, "label": 0, "pred_adv": 1}],
        "methods": {
            m: {"clean": [img], "adversarial": [img]}
            for m in ("integrated_gradients", "guided_gradcam", "shapley_value_sampling")
        },
    }
    fig = explanation_grid(data, ["a rather long class name", "another long class name"])
    titles = [ax.get_title() for ax in fig.axes]
    for m in data["methods"]:  # "integrated_gradi" before
        assert sum(t.replace("\n", "") == m for t in titles) == 2, titles
    assert "clean: a rather long class name" in [" ".join(t.split("\n")) for t in titles]
    rend = _drawn(fig)
    boxes = [ax.title.get_window_extent(rend) for ax in fig.axes]
    for a, b in itertools.pairwise(boxes):
        assert not a.overlaps(b), (a, b)


def test_per_class_legend_is_clear_of_the_bars() -> None:
    from xrobust.audit.figures import per_class_bars

    pc = {"clean_accuracy": [1.0] * 10, "robust_accuracy": [0.95] * 10}
    fig = per_class_bars(pc, [str(i) for i in range(10)], 0.1, "linf")
    rend = _drawn(fig)
    legends = [*fig.legends, *[ax.get_legend() for ax in fig.axes if ax.get_legend()]]
    assert legends
    bars = [p.get_window_extent(rend) for ax in fig.axes for p in ax.patches]
    for lg in legends:
        box = lg.get_window_extent(rend)
        assert not any(box.overlaps(b) for b in bars)


def test_minimal_perturbation_title_in_plain_words() -> None:
    from xrobust.audit.figures import minimal_perturbation_hist

    mp = {
        "eps": [0.01, 0.02, 0.05, None, 0.0],
        "outcome": ["broken", "broken", "broken", "not_broken", "misclassified_clean"],
        "eps_max": 0.3,
        "median_eps": 0.02,
    }
    fig = minimal_perturbation_hist(mp, "linf")
    title = " ".join(fig.axes[0].get_title().split())
    assert not re.search(r"\(\d+ not fooled up to", title)  # the old cryptic form
    assert "1 of 4 not fooled up to eps 0.3 (not shown)" in title
    assert "1 wrong before any attack (not shown)" in title
    mp.update(eps=[0.01, 0.02], outcome=["broken", "broken"])
    title = " ".join(minimal_perturbation_hist(mp, "linf").axes[0].get_title().split())
    assert "all 2 fooled by eps 0.3" in title
    rend = _drawn(fig)
    box, width = fig.axes[0].title.get_window_extent(rend), fig.bbox.width
    assert box.x0 >= 0 and box.x1 <= width  # not cut at the figure's edge


def test_wrap_label_keeps_every_character_of_a_short_name() -> None:
    from xrobust.audit.figures import short_label, wrap_label

    for name in ("integrated_gradients", "shapley_value_sampling", "clean: malignant tumour"):
        assert wrap_label(name).replace("\n", "").replace(" ", "") == name.replace(" ", "")
    assert wrap_label("x" * 200).endswith("…")  # only a huge label is shortened, visibly
    assert short_label("worst fractal dimension", 32) == "worst fractal dimension"
    assert short_label("abcdefghijklmnop", 8) == "abcdefg…"


# ------------------------------------------------------------------ CLI log noise
def test_cli_quiets_third_party_logs_unless_verbose() -> None:
    from xrobust.cli import quiet_third_party

    env: dict[str, str] = {}
    quiet_third_party(False, env)
    assert env == {"TF_CPP_MIN_LOG_LEVEL": "2"}
    env = {"TF_CPP_MIN_LOG_LEVEL": "0"}  # the user's explicit choice is kept
    quiet_third_party(False, env)
    assert env == {"TF_CPP_MIN_LOG_LEVEL": "0"}
    env = {}
    quiet_third_party(True, env)  # -v: everything shown
    assert env == {}


def test_not_run_lists_each_part_once() -> None:
    from xrobust.audit.report import SectionResult

    why = "needs input gradients; the model is a black box (onnx)"
    r = AuditReport(
        sections={
            "adversarial": SectionResult(
                "adversarial", skipped_parts=[{"part": "attack pgd", "reason": why}]
            ),
            "explanations": SectionResult(
                "explanations",
                skipped_parts=[
                    {"part": "attack pgd", "reason": why},
                    {"part": "method integrated_gradients", "reason": why},
                ],
            ),
        }
    )
    assert [(p["part"], p["sections"]) for p in r.not_run()] == [
        ("attack pgd", ["adversarial", "explanations"]),
        ("method integrated_gradients", ["explanations"]),
    ]


def test_what_to_try_only_for_warnings_and_failures() -> None:
    from xrobust.audit.advice import what_to_try
    from xrobust.audit.sections.sanity_checks import WHY

    for name in WHY:  # every sanity check has a next step
        assert what_to_try(CheckResult(name, "warn", "m")), name
        assert what_to_try(CheckResult(name, "pass", "m")) == ""
    assert "adversarially" in what_to_try(
        CheckResult("robust_accuracy[worst,linf,eps=0.1]", "fail", "m")
    )


@pytest.mark.slow
def test_tensorflow_start_up_lines_kept_out_of_the_cli_output() -> None:
    """A subcommand that imports TensorFlow (as a TFLite or Keras source does) prints none
    of its C++ start-up lines; with -v they are shown."""
    import subprocess
    import sys

    pytest.importorskip("tensorflow")
    code = (
        "import sys; from xrobust.cli import main; main(sys.argv[1:] + ['list']); "
        "import tensorflow as tf; print(float(tf.reduce_sum(tf.ones(3))))"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}

    def stderr(*flags: str) -> str:
        p = subprocess.run(
            [sys.executable, "-c", code, *flags],
            env=env, capture_output=True, text=True, timeout=300, check=True,
        )  # fmt: skip
        assert p.stdout.strip().endswith("3.0")
        return p.stderr

    def native(text: str) -> list[str]:  # absl-format C++ log lines: "I0000 00:00:..."
        return [ln for ln in text.splitlines() if re.match(r"[IWE]\d{4} ", ln) or "absl::" in ln]

    assert native(stderr()) == []
    if not native(stderr("-v")):  # with -v they are shown (when this build prints any)
        pytest.skip("this TensorFlow build prints no start-up lines to hide")
