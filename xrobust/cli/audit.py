"""``xrobust audit``: audit a trained model and write HTML, JSON, JUnit XML and Markdown.

Exit status: 0 when the audit passed (every requirement evaluated on complete evidence
and met), 1 when a requirement failed, 3 when it is incomplete (a requirement could not
be evaluated: a section skipped, stopped by the query budget or errored), 2 on a usage
error.
Under ``torchrun`` the examples are sharded across the processes and rank 0 writes the
report.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from xrobust.cli._common import add_source_args, check_out, int_range
from xrobust.errors import ConfigError

DEFAULT_OUT = "reports/audit"


def _verdict_word(report: Any) -> str:
    """The last line's verdict: "passed", "FAILED" or "INCOMPLETE (what is missing)"."""
    v = report.verdict
    if v == "passed":
        from xrobust.audit.markdown import verdict_line

        return verdict_line(report).replace("PASSED", "passed", 1)
    if v == "failed":
        return "FAILED"
    missing = report.missing_evidence()
    return f"INCOMPLETE ({len(missing)} missing: {missing[0]}{'; ...' if len(missing) > 1 else ''})"


class _DefaultsHelp(argparse.HelpFormatter):
    """Shows "(default: X)" only for options that have a default worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "%(default)" not in text
            and action.default not in (None, False, [], argparse.SUPPRESS)
            and action.option_strings
        ):
            text += " (default: %(default)s)"
        return text


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "audit",
        help="audit a model: robustness, corruptions, explanations, sanity checks, requirements",
        description=(
            "Audit a trained model and write report.html, report.json, junit.xml and summary.md "
            "into --out. Options given here override the --config TOML file. Exit status 1 when "
            "a requirement fails."
        ),
        formatter_class=_DefaultsHelp,
    )
    src = p.add_argument_group("what to audit")
    src.add_argument("--model", metavar="RUN_DIR", help="run folder written by `xrobust train`")
    src.add_argument(
        "--data",
        metavar="NAME_OR_PATH",
        help="dataset name or path; its test split is audited (default: the data the model "
        "was trained on, as recorded in its checkpoint)",
    )
    src.add_argument(
        "--target",
        metavar="COLUMN",
        help="label column of a CSV file, as on `xrobust train` (default: the column the "
        "model was trained with)",
    )
    src.add_argument(
        "--allow-incomplete",
        action="store_true",
        help="audit the checkpoint of a training run that did not finish (refused by default)",
    )
    add_source_args(src)
    src.add_argument(
        "--source",
        metavar="FILE.onnx|RUN_DIR",
        help="the model the audited one was converted from (e.g. the float ONNX file of a "
        "--tflite int8 model): audited beside it on the same examples, in the section "
        "'deployed' (deployed.source in the TOML)",
    )
    src.add_argument(
        "--demo",
        nargs="?",
        const="digits",
        choices=["digits", "digits-robust", "breast_cancer"],
        help="audit a built-in demo model (trained and cached on first use): digits (the "
        "default), digits-robust (the same CNN, PGD adversarially trained) or breast_cancer",
    )
    p.add_argument("--config", metavar="FILE.toml", help="audit configuration (TOML)")
    p.add_argument("--out", metavar="DIR", default=DEFAULT_OUT, help="folder for the reports")
    p.add_argument("--title", help="report title")
    o = p.add_argument_group("overrides of the configuration")
    o.add_argument("--seed", type=int_range(0), help="random seed (seed)")
    o.add_argument("--device", help="auto, cpu, cuda, cuda:1, ...")
    o.add_argument("--batch-size", type=int_range(1), help="examples per batch (batch_size)")
    o.add_argument(
        "--precision",
        choices=["fp32", "bf16", "fp16"],
        help="what the attacks' search passes run in (precision; default fp32); every "
        "adversarial verdict is verified in fp32",
    )
    o.add_argument("--n", type=int_range(1), metavar="N", help="examples attacked (adversarial.n)")
    o.add_argument("--attacks", help="comma-separated attack names, e.g. fgsm,pgd,apgd")
    o.add_argument("--norms", help="comma-separated norms: linf,l2")
    o.add_argument("--eps-linf", metavar="E1,E2", help="Linf eps grid")
    o.add_argument("--eps-l2", metavar="E1,E2", help="L2 eps grid")
    o.add_argument(
        "--steps", type=int_range(1, 100_000), help="iterations of PGD (adversarial.steps)"
    )
    o.add_argument("--methods", help="comma-separated explainer names")
    o.add_argument(
        "--skip",
        metavar="SECTIONS",
        help="comma-separated sections to switch off (clean, adversarial, corruption, "
        "explanations, deployed, sanity, requirements, and any registered section)",
    )
    r = p.add_argument_group(
        "requirements (exit status 0 passed, 1 a requirement failed, 3 incomplete: "
        "a requirement could not be evaluated)"
    )
    r.add_argument(
        "--min-clean-accuracy", type=float, metavar="X", help="minimum clean accuracy in [0, 1]"
    )
    r.add_argument(
        "--no-sanity-requirement",
        action="store_true",
        help="drop the sanity_checks_pass requirement (with --skip sanity, or the audit is "
        "incomplete: a requirement nobody measured is not passed)",
    )
    r.add_argument(
        "--max-ece", type=float, metavar="X", help="largest expected calibration error in [0, 1]"
    )
    r.add_argument(
        "--min-corruption-accuracy",
        type=float,
        metavar="X",
        help="minimum accuracy under every corruption in [0, 1]",
    )
    r.add_argument(
        "--require",
        action="append",
        default=[],
        metavar="ATTACK:NORM:EPS:MIN",
        help="minimum robust accuracy, e.g. pgd:linf:0.1:0.5 (repeatable; ATTACK may be 'worst')",
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress on stderr (otherwise a bar on a terminal, a line every few seconds "
        "in a log)",
    )
    p.add_argument(
        "--no-tune-malloc",
        action="store_true",
        help="keep glibc's default allocator settings (tuning is on by default on Linux CPUs)",
    )
    p.set_defaults(func=run)


def _csv(v: str) -> list[str]:
    return [s.strip() for s in v.split(",") if s.strip()]


def _names(v: str, opt: str) -> list[str]:
    """A comma-separated list that must name something (``--norms ,`` is refused)."""
    out = _csv(v)
    if not out:
        raise ConfigError(f"{opt} {v!r} names nothing; give a comma-separated list, e.g. {opt} a,b")
    return out


def _floats(v: str, opt: str) -> list[float]:
    try:
        out = [float(s) for s in _csv(v)]
    except ValueError as exc:
        raise ConfigError(f"{opt} expects comma-separated numbers, got {v!r}") from exc
    if not out:
        raise ConfigError(f"{opt} {v!r} holds no number; give comma-separated eps, e.g. {opt} 0.05,0.1")
    return out


def build_config(args: argparse.Namespace) -> Any:
    """The AuditConfig from --config (or the demo's) with the flags applied."""
    from xrobust.audit import AuditConfig, load_config
    from xrobust.audit.demo import demo_config
    from xrobust.audit.section import list_sections

    if args.config:
        base = load_config(args.config)
    elif args.demo:
        base = demo_config(args.demo)
    else:
        base = AuditConfig()
    d = base.to_dict()
    if args.seed is not None:
        d["seed"] = args.seed
    if args.device:
        d["device"] = args.device
    if args.batch_size is not None:
        d["batch_size"] = args.batch_size
    if args.precision is not None:
        d["precision"] = args.precision
    adv = d["adversarial"]
    if args.n is not None:
        adv["n"] = args.n
    if args.attacks is not None:
        adv["attacks"] = _names(args.attacks, "--attacks")
    if args.norms is not None:
        adv["norms"] = _names(args.norms, "--norms")
    if args.eps_linf is not None:
        adv["eps"]["linf"] = _floats(args.eps_linf, "--eps-linf")
    if args.eps_l2 is not None:
        adv["eps"]["l2"] = _floats(args.eps_l2, "--eps-l2")
    if args.steps is not None:
        adv["steps"] = args.steps
    if args.methods is not None:
        d["explanations"]["methods"] = _names(args.methods, "--methods")
    sections = list_sections()
    for s in _csv(args.skip or ""):
        if s not in sections:
            raise ConfigError(
                f"--skip: unknown section {s!r}; expected some of {', '.join(sections)}"
            )
        d.setdefault(s, {})["enabled"] = False
    req = d["requirements"]
    if args.no_sanity_requirement:
        req["sanity_checks_pass"] = False
    if args.min_clean_accuracy is not None:
        req["min_clean_accuracy"] = args.min_clean_accuracy
    if args.max_ece is not None:
        req["max_ece"] = args.max_ece
    if args.min_corruption_accuracy is not None:
        req["min_corruption_accuracy"] = args.min_corruption_accuracy
    for spec in args.require:
        parts = spec.split(":")
        if len(parts) != 4:
            raise ConfigError(
                f"--require expects ATTACK:NORM:EPS:MIN (e.g. pgd:linf:0.1:0.5), got {spec!r}"
            )
        try:
            eps, mn = float(parts[2]), float(parts[3])
        except ValueError as exc:
            raise ConfigError(f"--require {spec!r}: EPS and MIN must be numbers") from exc
        req["robust"].append(
            {"attack": parts[0].lower(), "norm": parts[1].lower(), "eps": eps, "min_accuracy": mn}
        )
    if getattr(args, "source", None):
        d["deployed"]["source"] = args.source
    cfg = AuditConfig.from_dict(d)
    cfg.validate()  # every value and requirement checked before any work
    return cfg


def _uses_cuda(cfg: Any) -> bool:
    """Whether the audit will run on a CUDA device (the allocator tuning is for CPU runs)."""
    from xrobust.device import resolve_device

    try:
        return resolve_device(cfg.device).type == "cuda"
    except ConfigError:
        return False  # the audit itself reports the bad device


def run(args: argparse.Namespace) -> int:
    from xrobust.audit import audit

    given = [f"--{f}" for f in ("model", "onnx", "tflite", "endpoint") if getattr(args, f, None)]
    if args.demo and given:
        raise ConfigError(f"give either --demo or {given[0]}, not both")
    if not args.demo and not given:
        raise ConfigError(
            "nothing to audit: give --model RUN_DIR (from `xrobust train`), --onnx FILE.onnx, "
            "--tflite FILE.tflite, --endpoint URL, or --demo"
        )
    if args.demo and (args.target or args.allow_incomplete):
        raise ConfigError("--target and --allow-incomplete apply to --model, not --demo")
    if args.demo and (
        args.output or args.layout or args.query_budget or args.header or args.white_box
    ):
        raise ConfigError(
            "--output, --layout, --query-budget, --header and --white-box apply to --onnx / "
            "--endpoint"
        )
    cfg = build_config(args)
    check_out(
        args.out,
        folder=True,
        inputs=(getattr(args, "model", None), getattr(args, "onnx", None), getattr(args, "data", None),
                getattr(args, "config", None), getattr(args, "tflite", None),
                getattr(args, "source", None)),
    )  # fmt: skip
    from xrobust.device import maybe_tune_allocator, set_auto_tune_allocator

    if args.no_tune_malloc:
        set_auto_tune_allocator(False)  # audit() would tune it otherwise
    elif not _uses_cuda(cfg):
        maybe_tune_allocator("cpu")  # an allocator the user configured is left alone
    from xrobust.audit.render import report_lock
    from xrobust.distributed import process_group

    with contextlib.ExitStack() as stack:
        ctx = stack.enter_context(process_group())
        # rank 0 writes the reports: it holds the folder's lock from before any work
        if ctx.rank == 0:
            stack.enter_context(report_lock(args.out))
        return _run_audit(args, cfg, ctx, audit)


def _run_audit(args: argparse.Namespace, cfg: Any, ctx: Any, audit: Any) -> int:
    from xrobust.cli._progress import ProgressRenderer

    with ProgressRenderer(enabled=not args.no_progress) as shown:
        rank = ctx.rank
        bars = shown if rank == 0 else None
        if args.demo:
            from xrobust.audit.demo import demo_run

            if rank == 0:
                print(
                    f"xrobust audit: demo model for {args.demo} (trained and cached on first use)",
                    file=sys.stderr,
                )
            loaded = demo_run(args.demo, progress=bars) if rank == 0 else None
            ctx.barrier()
            if loaded is None:
                loaded = demo_run(args.demo)
            from xrobust.data.schema import load_for_model

            bundle = load_for_model(loaded.spec, args.data, resize=bool(getattr(args, "resize", False)))
            model: Any = loaded.model
            info = {
                "name": loaded.metadata.get("architecture") or type(loaded.model).__name__,
                "source": str(loaded.path) if loaded.path else None,
            }
        else:
            from xrobust.cli._common import load_source

            if cfg.output_name and not getattr(args, "output_name", None):
                if not (args.onnx or args.tflite or args.endpoint):
                    raise ConfigError(
                        f"output_name = {cfg.output_name!r} in the config applies to --onnx / "
                        "--endpoint; a run directory has one output"
                    )
                args.output_name = cfg.output_name
            src = load_source(args)
            model, bundle, info = src.model, src.bundle, src.info
        report = audit(model, bundle, cfg, progress=bars, title=args.title, model_info=info)
        shown.close()
        if rank == 0:
            paths = report.save(args.out)
            from xrobust.audit.markdown import headline

            for k, v in headline(report):
                print(f"{k}: {v}")
            q = report.queries
            if q.get("total"):
                budget = f" of a budget of {q['budget']:,}" if q.get("budget") else ""
                print(f"queries: {q['total']:,}{budget}")
            for name, sec in report.sections.items():
                if sec.status in ("partial", "not_available", "error"):
                    print(f"{name}: {sec.status}: {sec.reason}")
            for c in report.failed_requirements:
                print(f"FAILED {c.name}: {c.message}")
            for c in report.unevaluated_requirements:
                print(f"NOT EVALUATED {c.name}: {c.message}")
            print(f"reports: {', '.join(str(p) for p in paths.values())}")
            print("audit " + _verdict_word(report))
        return report.exit_code
