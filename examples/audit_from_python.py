"""A full audit from Python: model + dataset + TOML config -> HTML, JSON, JUnit, Markdown.

Run: python examples/audit_from_python.py [OUT_DIR]
(the demo CNN is trained once and cached; XROBUST_EXAMPLES_FAST=1 shrinks the audit)
"""

import os
import sys
from pathlib import Path

from xrobust.audit import audit, load_config
from xrobust.audit.demo import demo_run
from xrobust.data import load_dataset

out = sys.argv[1] if len(sys.argv) > 1 else "reports/example"
run = demo_run(
    "digits"
)  # a LoadedRun: .model, .spec, .metadata (or: xrobust.models.load_run("runs/digits"))
config = load_config(Path(__file__).with_name("audit.toml"))
if os.environ.get("XROBUST_EXAMPLES_FAST") == "1":  # tiny sample sizes for the test suite
    config.adversarial.n, config.adversarial.steps = 32, 10  # every attack: 10 iterations
    config.adversarial.options = {"ensemble": {"n_target_classes": 3}}
    config.corruption.n, config.explanations.n_metrics, config.sanity.n = 64, 4, 16
    config.adversarial.norms, config.explanations.methods = ["linf"], ["saliency"]
    config.sanity.convergence_factor = 2

report = audit(run.model, load_dataset("digits"), config, progress=lambda stage, done, total: None)
paths = report.save(out)
print(f"clean accuracy {report.sections['clean'].data['accuracy']:.3f}")
for r in report.requirements:
    print(f"{r.status:4}  {r.name}: {r.message}")
print("passed" if report.passed else "FAILED", "->", paths["html"])
