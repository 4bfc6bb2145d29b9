"""Audit configuration: every section switchable, sample sizes, eps grids, requirements.

An :class:`AuditConfig` is plain data. It loads from a TOML file (:func:`load_config`) and
round-trips through :meth:`AuditConfig.to_dict` / :meth:`AuditConfig.from_dict`, so the
report can store exactly what was run.

Example:
    >>> from xrobust.audit import AuditConfig
    >>> cfg = AuditConfig.from_dict({"adversarial": {"n": 64, "norms": ["linf"]},
    ...                              "requirements": {"min_clean_accuracy": 0.9}})
    >>> cfg.adversarial.n, cfg.requirements.min_clean_accuracy
    (64, 0.9)
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xrobust.attacks.norms import list_norms
from xrobust.device import parse_precision
from xrobust.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = [
    "SECTIONS",
    "AdversarialConfig",
    "AuditConfig",
    "CleanConfig",
    "CorruptionConfig",
    "DeployedConfig",
    "ExplanationConfig",
    "RequirementsConfig",
    "RobustRequirement",
    "SanityConfig",
    "load_config",
]

#: Largest sample count / iteration count a config may ask for.
MAX_COUNT = 10_000_000
#: Largest iteration / restart / bin count a config may ask for.
MAX_STEPS = 100_000
#: Largest TOML file :func:`load_config` reads.
MAX_CONFIG_BYTES = 1 << 20

SECTIONS = (
    "clean", "adversarial", "corruption", "explanations", "deployed", "sanity", "requirements",
)  # fmt: skip
NORMS = tuple(list_norms())
#: the audit's default budget per attack, applied before ``adversarial.steps`` /
#: ``restarts`` and ``adversarial.options`` (PGD-20; APGD and the ensemble keep their
#: reference 100 iterations)
DEFAULT_ATTACK_OPTIONS: dict[str, dict[str, Any]] = {
    "pgd": {"steps": 20},
    # query-only attacks on a black box: 1,000 queries per example, the budget at which
    # Square came within 10 points of white-box APGD-CE on the digits CNN (BENCHMARKS.md)
    "square": {"queries": 1000},
    "hop_skip_jump": {"queries": 1000},
}
IMAGE_CORRUPTIONS = ("gaussian_noise", "gaussian_blur", "brightness", "contrast", "occlusion")
TABULAR_CORRUPTIONS = ("feature_noise", "missing_features")


@dataclass
class CleanConfig:
    """Section 1, clean performance.

    Attributes:
        enabled: run the section.
        n: number of test examples (None: the whole test set).
        ece_bins: number of equal-width confidence bins of the calibration error.
    """

    enabled: bool = True
    n: int | None = None
    ece_bins: int = 15


@dataclass
class AdversarialConfig:
    """Section 2, adversarial robustness.

    Attributes:
        enabled: run the section.
        n: number of test examples attacked.
        attacks: registered attack names (robustness curves for each). The default ends
            with ``ensemble`` (APGD-CE then APGD-T, 100 iterations each, 9 target
            classes: AutoAttack's APGD part), so the worst case is at least that strong.
        black_box_attacks: query-only attacks run on a black box (ONNX, endpoint, predict
            function), where the gradient attacks of ``attacks`` cannot run.
        black_box_minimal: the decision-based minimum-norm attack that measures each
            example's smallest fooling perturbation on a black box (one run, no bisection).
        norms: threat models, "linf" and/or "l2".
        eps: eps grid per norm in input units; a norm left out gets a grid derived from
            the data bounds and input size.
        steps: when set, the iterations of every attack that has a ``steps`` option
            (None: :data:`DEFAULT_ATTACK_OPTIONS`, else each attack's own default).
        restarts: likewise for random restarts.
        options: per attack, options passed through to it (``[adversarial.options.pgd]``
            in TOML), validated against the attack's config dataclass; they win over
            ``steps`` / ``restarts``.
        headline_only: attacks run only at the headline eps and the requirements' eps, not
            over the whole grid: the reference ensemble, whose cost grows with the number
            of examples that stay robust (APGD-T spends 900 iterations on each).
        headline_eps: per norm, the eps at which per-class robust accuracy, the flip matrix
            and the explanations' adversarial examples are reported (default: the middle
            of the grid).
        minimal_perturbation: measure each example's smallest fooling eps (bisection).
        bisection_steps: bisection iterations of the minimal perturbation.
        n_vulnerable: how many most-vulnerable examples to show.
        early_stop: evaluation mode (stop attacking an example once it is fooled); it
            never raises robust accuracy and is much faster.
    """

    enabled: bool = True
    n: int = 256
    attacks: list[str] = field(default_factory=lambda: ["fgsm", "pgd", "apgd", "ensemble"])
    black_box_attacks: list[str] = field(default_factory=lambda: ["square"])
    black_box_minimal: str = "hop_skip_jump"
    norms: list[str] = field(default_factory=lambda: ["linf", "l2"])
    eps: dict[str, list[float]] = field(default_factory=dict)
    steps: int | None = None
    restarts: int | None = None
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    headline_only: list[str] = field(default_factory=lambda: ["ensemble", "square"])
    headline_eps: dict[str, float] = field(default_factory=dict)
    minimal_perturbation: bool = True
    bisection_steps: int = 6
    n_vulnerable: int = 6
    early_stop: bool = True


@dataclass
class CorruptionConfig:
    """Section 3, corruption robustness.

    Attributes:
        enabled: run the section.
        n: number of test examples corrupted.
        severities: severities 1..5 to evaluate.
        corruptions: names from :mod:`xrobust.audit.corruptions` (None: every corruption
            of the data's modality).
    """

    enabled: bool = True
    n: int = 512
    severities: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    corruptions: list[str] | None = None


@dataclass
class ExplanationConfig:
    """Section 4, explanations.

    Attributes:
        enabled: run the section.
        n: examples shown (clean and adversarial attributions side by side).
        methods: registered explainer names.
        black_box_methods: forward-only explainers run on a black box, where the
            gradient methods of ``methods`` cannot run.
        norm: threat model of the adversarial examples explained.
        attack: registered attack that makes them (at the norm's headline eps).
        deletion_insertion: compute deletion/insertion AUC.
        randomisation: run the model-parameter randomisation sanity check.
        stability: measure how attributions shift under attack.
        n_metrics: examples over which the metrics are averaged.
    """

    enabled: bool = True
    n: int = 4
    methods: list[str] = field(default_factory=lambda: ["saliency", "integrated_gradients"])
    black_box_methods: list[str] = field(
        default_factory=lambda: ["occlusion", "feature_ablation", "kernel_shap", "lime"]
    )
    norm: str = "linf"
    attack: str = "pgd"
    deletion_insertion: bool = True
    randomisation: bool = True
    stability: bool = True
    n_metrics: int = 32


@dataclass
class DeployedConfig:
    """Section 7, the deployed model beside its source (:mod:`xrobust.audit.sections.deployed`):
    runs only when a source is given (``source`` here, ``--source``, or ``audit(...,
    source=)``); evidence, never a requirement.

    Attributes:
        enabled: run the section when a source is given.
        source: the model the audited (deployed) one came from: an ``.onnx`` file (white-box
            through onnx2torch when installed) or a run directory; a path relative to the
            working folder.
        n: examples compared.
        norm: threat model of both attacks.
        eps: their budget (default: the norm's headline eps of the adversarial section).
        attack: the query-only attack run on both models with the same seeds.
        queries: its query budget per example (default: the audit's, 1,000 for Square).
        white_box_attack: the gradient attack run on the source, whose adversarial examples
            are then evaluated on the deployed model (transfer).
    """

    enabled: bool = True
    source: str | None = None
    n: int = 128
    norm: str = "linf"
    eps: float | None = None
    attack: str = "square"
    queries: int | None = None
    white_box_attack: str = "apgd"


@dataclass
class SanityConfig:
    """Section 5, evaluation sanity checks against gradient masking.

    Attributes:
        enabled: run the section.
        n: examples used by the checks that run their own attacks.
        convergence_factor: the convergence check reruns PGD with this many times more
            steps (and this many restarts) and compares.
        tolerance: largest accuracy difference still counted as agreement.
        large_eps_max_accuracy: accuracy at the large eps above which the check fails.
        single_step_attack: the single-step attack the iterative ones must beat.
        iterative_attack: the iterative attack of the checks that run their own attacks
            (large eps, convergence, random noise).
        black_box_attack: the query-only attack that ``black_box_not_stronger`` compares
            with the iterative one.
        black_box_queries: its query budget per example (300: a gradient-masked model falls
            to Square within a few dozen queries, and the demo audit stays within 90 s).
    """

    enabled: bool = True
    n: int = 64
    convergence_factor: int = 5
    tolerance: float = 0.03
    large_eps_max_accuracy: float = 0.05
    single_step_attack: str = "fgsm"
    iterative_attack: str = "pgd"
    black_box_attack: str = "square"
    black_box_queries: int = 300


@dataclass
class RobustRequirement:
    """Minimum robust accuracy under one attack at one eps.

    Attributes:
        attack: registered attack name, or "worst" for the worst case over all the
            section's attacks.
        norm: "linf" or "l2".
        eps: perturbation budget (added to the section's eps grid when missing).
        min_accuracy: required robust accuracy in [0, 1].
    """

    attack: str
    norm: str
    eps: float
    min_accuracy: float

    @property
    def name(self) -> str:
        """Readable identifier, e.g. ``robust_accuracy[pgd,linf,eps=0.1]``."""
        return f"robust_accuracy[{self.attack},{self.norm},eps={self.eps:g}]"


@dataclass
class RequirementsConfig:
    """Section 6, requirements: thresholds that become pass/fail results.

    Attributes:
        enabled: evaluate the requirements.
        min_clean_accuracy: minimum clean accuracy.
        max_ece: maximum expected calibration error.
        min_corruption_accuracy: minimum accuracy under every corruption at
            ``corruption_severity``.
        corruption_severity: severity of that requirement.
        robust: minimum robust accuracies.
        sanity_checks_pass: a failed sanity check fails the audit (the robust numbers
            cannot be trusted then).
    """

    enabled: bool = True
    min_clean_accuracy: float | None = None
    max_ece: float | None = None
    min_corruption_accuracy: float | None = None
    corruption_severity: int = 3
    robust: list[RobustRequirement] = field(default_factory=list)
    sanity_checks_pass: bool = True


@dataclass
class AuditConfig:
    """Everything an audit runs.

    Attributes:
        seed: seed of every random choice (sample, random starts, corruptions).
        device: "auto", "cpu", "cuda", ...
        batch_size: examples per chunk; also the unit of sharding under torchrun.
        amp: mixed precision on CUDA (False, True, "bf16", "fp16") for every section's
            forward passes.
        precision: what the attacks' search passes run in: "fp32" (default), "bf16" or
            "fp16" (autocast, on CPU and CUDA); every adversarial verdict is still fp32's,
            so robust accuracies are never lower than fp32 confirms. Recorded per attack
            result in report.json.
        output_name: for an ONNX model or an endpoint with several outputs, the one holding
            the class scores (``--output-name`` on the command line overrides it).
        clean / adversarial / corruption / explanations / deployed / sanity / requirements:
            the built-in sections' options.
        extra: the options of registered (non built-in) sections, by section name
            (:mod:`xrobust.audit.section`); in dicts and TOML they sit beside the built-in
            ones (``[entropy]``), and :meth:`section_config` reads them.

    Example:
        >>> cfg = AuditConfig(seed=1)
        >>> AuditConfig.from_dict(cfg.to_dict()) == cfg
        True
    """

    seed: int = 0
    device: str = "auto"
    batch_size: int = 128
    amp: bool | str = False
    precision: str = "fp32"
    output_name: str | None = None
    clean: CleanConfig = field(default_factory=CleanConfig)
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)
    corruption: CorruptionConfig = field(default_factory=CorruptionConfig)
    explanations: ExplanationConfig = field(default_factory=ExplanationConfig)
    deployed: DeployedConfig = field(default_factory=DeployedConfig)
    sanity: SanityConfig = field(default_factory=SanityConfig)
    requirements: RequirementsConfig = field(default_factory=RequirementsConfig)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ conversion
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (inverse of :meth:`from_dict`); registered sections' options
        beside the built-in ones."""
        d = dataclasses.asdict(self)
        d.update(d.pop("extra"))
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AuditConfig:
        """Build a config from a (possibly partial) dict; unknown keys are errors.

        Raises:
            ConfigError: unknown key (with a did-you-mean), wrong type or bad value.
        """
        if not isinstance(d, dict):
            raise ConfigError(f"audit config must be a table/dict, got {type(d).__name__}")
        return _build(cls, d, "")

    def replace(self, **changes: Any) -> AuditConfig:
        """A copy with top-level fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    def enabled(self, section: str) -> bool:
        """Whether ``section`` (a registered section's name) runs."""
        return bool(self.section_config(section).enabled)

    def section_config(self, section: str) -> Any:
        """The options of ``section``: a built-in field, a registered section's entry of
        :attr:`extra`, or that section's defaults.

        Raises:
            ConfigError: no section of that name is registered.
        """
        if section in SECTIONS:
            return getattr(self, section)
        if section in self.extra:
            return self.extra[section]
        from xrobust.audit.section import get_section

        return get_section(section).config()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Check values; raises :class:`ConfigError` with what was expected."""
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        self.precision = parse_precision(self.precision)
        if self.output_name is not None and (
            not isinstance(self.output_name, str) or not self.output_name.strip()
        ):
            raise ConfigError(
                f"output_name must be a non-empty output name, got {self.output_name!r}"
            )
        self._check_empty_lists()
        self._check_adversarial()
        self._check_counts()
        self._check_sections()
        self._check_thresholds()
        self._check_requirements_can_be_measured()
        self._check_names()
        self._check_deployed()
        for name, opts in self.extra.items():
            if hasattr(opts, "validate"):
                opts.validate()
            elif not dataclasses.is_dataclass(opts):
                raise ConfigError(f"{name}: section options must be a table, got {opts!r}")

    def _check_deployed(self) -> None:
        """The deployed section's source, counts, norm, eps and attacks."""
        d = self.deployed
        if d.source is not None and (not isinstance(d.source, str) or not d.source.strip()):
            raise ConfigError(f"deployed.source must be a model path, got {d.source!r}")
        for name, v in (("deployed.n", d.n), ("deployed.queries", d.queries)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1
                                  or v > MAX_COUNT):  # fmt: skip
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        if d.norm not in NORMS:
            raise ConfigError(f"deployed.norm must be one of {NORMS}, got {d.norm!r}")
        if d.eps is not None and not (0 < d.eps < float("inf")):
            raise ConfigError(f"deployed.eps must be a positive number, got {d.eps!r}")
        if not d.enabled:
            return
        from xrobust.attacks import ATTACKS

        if ATTACKS.get(d.attack).requires_gradients:
            raise ConfigError(
                f"deployed.attack {d.attack!r} needs gradients; it runs on the deployed black "
                "box: name a query-only attack (square)"
            )
        if not ATTACKS.get(d.white_box_attack).requires_gradients:
            raise ConfigError(
                f"deployed.white_box_attack {d.white_box_attack!r} is query-only; name a "
                "gradient attack (apgd, pgd)"
            )

    def _check_empty_lists(self) -> None:
        """A section that is on must be asked something: no empty norm, corruption,
        severity or method list."""
        a = self.adversarial
        if a.enabled and not a.norms:
            raise ConfigError(
                f"adversarial.norms is empty; name at least one of {', '.join(NORMS)} or disable "
                "the section (an adversarial section with no threat model measures nothing)"
            )
        c = self.corruption
        if c.enabled and not c.severities:
            raise ConfigError(
                "corruption.severities is empty; give severities in 1..5 or disable the section"
            )
        if c.enabled and c.corruptions is not None and not c.corruptions:
            raise ConfigError(
                "corruption.corruptions is empty; name corruptions, leave it out for all of them, "
                "or disable the section"
            )
        e = self.explanations
        if e.enabled and not e.methods:
            raise ConfigError(
                "explanations.methods is empty; name at least one explainer or disable the section"
            )

    def _check_adversarial(self) -> None:
        """Known norms, positive eps grids and headline eps, step counts, attack options."""
        a = self.adversarial
        for norm in a.norms:
            if norm not in NORMS:
                raise ConfigError(
                    f"adversarial.norms: unknown norm {norm!r}; expected one of {NORMS}"
                )
        for norm, grid in a.eps.items():
            if norm not in NORMS:
                raise ConfigError(
                    f"adversarial.eps: unknown norm {norm!r}; expected one of {NORMS}"
                )
            if not grid or any(not isinstance(e, int | float) or e <= 0 for e in grid):
                raise ConfigError(
                    f"adversarial.eps.{norm} must be a non-empty list of positive numbers, got {grid!r}"
                )
        for norm, e in a.headline_eps.items():
            if norm not in NORMS or e <= 0:
                raise ConfigError(f"adversarial.headline_eps: bad entry {norm!r} = {e!r}")
        for name, opt in (("adversarial.steps", a.steps), ("adversarial.restarts", a.restarts)):
            if opt is not None and (isinstance(opt, bool) or not isinstance(opt, int) or opt < 1):
                raise ConfigError(f"{name} must be a positive integer or absent, got {opt!r}")
        _check_attack_options(a.options)

    def _check_counts(self) -> None:
        """Sample sizes and bins: positive integers within their caps."""
        a = self.adversarial
        for name, v in (
            ("adversarial.n", a.n),
            ("corruption.n", self.corruption.n),
            ("explanations.n", self.explanations.n),
            ("sanity.n", self.sanity.n),
            ("clean.ece_bins", self.clean.ece_bins),
            ("sanity.convergence_factor", self.sanity.convergence_factor),
            ("sanity.black_box_queries", self.sanity.black_box_queries),
        ):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
            cap = MAX_STEPS if name.endswith(("steps", "restarts", "factor", "bins")) else MAX_COUNT
            if v > cap:
                raise ConfigError(f"{name} must be at most {cap}, got {v!r}")
        if self.clean.n is not None and self.clean.n < 1:
            raise ConfigError(f"clean.n must be a positive integer or absent, got {self.clean.n}")

    def _check_sections(self) -> None:
        """Attacks named, severities in 1..5, a known explanation norm."""
        a = self.adversarial
        if not a.attacks and a.enabled:
            raise ConfigError(
                "adversarial.attacks is empty; name at least one attack or disable the section"
            )
        for s in self.corruption.severities:
            if s not in (1, 2, 3, 4, 5):
                raise ConfigError(f"corruption.severities must be in 1..5, got {s!r}")
        if self.explanations.norm not in NORMS:
            raise ConfigError(
                f"explanations.norm must be one of {NORMS}, got {self.explanations.norm!r}"
            )

    def _check_thresholds(self) -> None:
        """Requirement thresholds in [0, 1], robust requirements on known norms and eps."""
        r = self.requirements
        for name, v in (
            ("min_clean_accuracy", r.min_clean_accuracy),
            ("max_ece", r.max_ece),
            ("min_corruption_accuracy", r.min_corruption_accuracy),
        ):
            if v is not None and not (0.0 <= float(v) <= 1.0):
                raise ConfigError(f"requirements.{name} must be in [0, 1], got {v!r}")
        for req in r.robust:
            if req.norm not in NORMS:
                raise ConfigError(
                    f"requirements.robust: unknown norm {req.norm!r}; expected one of {NORMS}"
                )
            if not req.eps > 0 or req.eps == float("inf"):
                raise ConfigError(f"requirements.robust: eps must be positive, got {req.eps!r}")
            if not 0.0 <= req.min_accuracy <= 1.0:
                raise ConfigError(
                    f"requirements.robust: min_accuracy must be in [0, 1], got {req.min_accuracy!r}"
                )

    def _check_names(self) -> None:
        """Unknown attack or explainer names fail here, before any section runs."""
        if self.adversarial.enabled:
            from xrobust.attacks import ATTACKS

            for name in self.adversarial.attacks:
                ATTACKS.get(name)
        if self.explanations.enabled:
            from xrobust.explain import EXPLAINERS

            for name in self.explanations.methods:
                EXPLAINERS.get(name)

    def _check_requirements_can_be_measured(self) -> None:
        """A requirement on an attack or norm this config does not run fails before any work.

        (A requirement whose whole section is switched off is reported as not measured,
        and fails, in the report.)
        """
        r, a = self.requirements, self.adversarial
        for i, req in enumerate(r.robust):
            where = f"requirements.robust[{i}] ({req.attack}:{req.norm}:{req.eps:g})"
            if not a.enabled:
                continue
            if req.attack != "worst" and req.attack not in a.attacks:
                raise ConfigError(
                    f"{where}: attack {req.attack!r} is not among the attacks this audit runs "
                    f"({', '.join(a.attacks)}); add it to adversarial.attacks (--attacks) or "
                    "use 'worst'"
                )
            if req.norm not in a.norms:
                raise ConfigError(
                    f"{where}: norm {req.norm!r} is not among the norms this audit runs "
                    f"({', '.join(a.norms)}); add it to adversarial.norms (--norms)"
                )
        if (
            r.min_corruption_accuracy is not None
            and self.corruption.enabled
            and r.corruption_severity not in self.corruption.severities
        ):
            raise ConfigError(
                f"requirements.corruption_severity {r.corruption_severity} is not among "
                f"corruption.severities {self.corruption.severities}; add it there"
            )


def _check_attack_options(options: Any) -> None:
    """Every ``adversarial.options.<attack>`` table names a registered attack and only
    options its config takes, with values of the right types."""
    if not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values()):
        raise ConfigError(
            "adversarial.options must be a table of tables, one per attack, e.g. "
            f"[adversarial.options.pgd] steps = 40; got {options!r}"
        )
    if not options:
        return
    from xrobust.attacks import parse_options

    for name, opts in options.items():
        try:
            parse_options(name, opts)
        except ConfigError as exc:
            raise ConfigError(f"adversarial.options.{name}: {exc}") from exc


def load_config(path: str | Path) -> AuditConfig:
    """Load an :class:`AuditConfig` from a TOML file.

    The file's top-level keys are those of :class:`AuditConfig`; sections are tables
    (``[adversarial]``), robust requirements an array of tables
    (``[[requirements.robust]]``). Keys left out keep their defaults.

    Raises:
        ConfigError: the file is not valid TOML, or a key or value is wrong.
        FileNotFoundError: no such file.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "audit.toml"
        >>> _ = p.write_text('seed = 3\\n[requirements]\\nmin_clean_accuracy = 0.8\\n')
        >>> load_config(p).requirements.min_clean_accuracy
        0.8
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; expected a TOML file")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path}: {len(raw)} bytes; an audit config is at most {MAX_CONFIG_BYTES}"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.start}); TOML files must be UTF-8"
        ) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except RecursionError as exc:
        raise ConfigError(f"{path}: not valid TOML: nested too deeply") from exc
    try:
        cfg = AuditConfig.from_dict(data)
        cfg.validate()
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return cfg


# ---------------------------------------------------------------------- helpers
#: keys replaced by per-attack options: old key -> (attack, option)
_MOVED_TO_OPTIONS = {"apgd_steps": ("apgd", "steps")}


def _build(cls: type, d: dict[str, Any], prefix: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if cls is AdversarialConfig:
        d = _migrate(d, prefix)
    kwargs: dict[str, Any] = {}
    if cls is AuditConfig:
        d, kwargs["extra"] = _registered_sections(d, set(fields))
    for key, value in d.items():
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=2, cutoff=0.5)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(
                f"unknown config key {prefix + key!r}.{hint} Expected one of: {', '.join(fields)}."
            )
        kwargs[key] = _convert(cls, key, value, prefix)
    try:
        obj = cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: {exc}") from exc
    return obj


def _registered_sections(
    d: dict[str, Any], known: set[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The tables of registered (non built-in) sections split off ``d``, each built as its
    section's config dataclass; other keys stay for the unknown-key error."""
    if "extra" in d:
        raise ConfigError(
            "unknown config key 'extra'; a registered section's options are a table named "
            "after the section, e.g. [entropy]"
        )
    unknown = [k for k in d if k not in known]
    if not unknown:
        return d, {}
    from xrobust.audit.section import SECTIONS as REGISTERED
    from xrobust.audit.section import get_section

    extra = {}
    for key in unknown:
        if key in SECTIONS or key not in REGISTERED:
            continue
        section = get_section(key)
        if not isinstance(d[key], dict):
            raise ConfigError(f"{key} must be a table, got {d[key]!r}")
        extra[section.name] = _build(section.config, d[key], key + ".")
    return {k: v for k, v in d.items() if k not in extra}, extra


def _migrate(d: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Keys of older configs that became per-attack options, moved there with a warning."""
    moved = [k for k in _MOVED_TO_OPTIONS if k in d]
    if not moved:
        return d
    import warnings

    d = dict(d)
    options = {k: dict(v) for k, v in (d.get("options") or {}).items() if isinstance(v, dict)}
    for key in moved:
        attack, opt = _MOVED_TO_OPTIONS[key]
        warnings.warn(
            f"{prefix}{key} is deprecated: write [{prefix}options.{attack}] {opt} = ... instead",
            DeprecationWarning,
            stacklevel=4,
        )
        options.setdefault(attack, {}).setdefault(opt, d.pop(key))
    d["options"] = options
    return d


_SUB = {
    "clean": CleanConfig,
    "adversarial": AdversarialConfig,
    "corruption": CorruptionConfig,
    "explanations": ExplanationConfig,
    "deployed": DeployedConfig,
    "sanity": SanityConfig,
    "requirements": RequirementsConfig,
}


def _convert(cls: type, key: str, value: Any, prefix: str) -> Any:
    where = prefix + key
    if cls is AuditConfig and key in _SUB:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table, got {value!r}")
        return _build(_SUB[key], value, where + ".")
    if cls is RequirementsConfig and key == "robust":
        if isinstance(value, dict):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise ConfigError(
                f"{where} must be a list of tables with attack, norm, eps, min_accuracy; got {value!r}"
            )
        out = []
        for i, v in enumerate(value):
            missing = {"attack", "norm", "eps", "min_accuracy"} - set(v)
            if missing:
                raise ConfigError(f"{where}[{i}] is missing {sorted(missing)}")
            rr = _build(RobustRequirement, v, f"{where}[{i}].")
            rr.eps = _num(rr.eps, f"{where}[{i}].eps")
            rr.min_accuracy = _num(rr.min_accuracy, f"{where}[{i}].min_accuracy")
            out.append(rr)
        return out
    if key == "eps" and cls is AdversarialConfig:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table of norm -> list of eps, got {value!r}")
        out_eps = {}
        for k, v in value.items():
            if not isinstance(v, list):
                v = [v]
            out_eps[str(k)] = [_num(e, f"{where}.{k}") for e in v]
        return out_eps
    if key == "options" and cls is AdversarialConfig:
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            raise ConfigError(
                f"{where} must be a table of tables, one per attack, e.g. "
                f"[{where}.pgd] steps = 40; got {value!r}"
            )
        return {str(k).lower(): dict(v) for k, v in value.items()}
    if key == "headline_eps" and cls is AdversarialConfig:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table of norm -> eps, got {value!r}")
        return {str(k): _num(v, f"{where}.{k}") for k, v in value.items()}
    default = next(f for f in dataclasses.fields(cls) if f.name == key)
    ann = str(default.type)
    if ann == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
    elif ann.startswith("int") and "float" not in ann:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
    elif ann.startswith("float"):
        if value is not None:
            value = _num(value, where)
    elif ann.startswith("list[str]"):
        if isinstance(value, str):
            value = [s.strip() for s in value.split(",") if s.strip()]
        if value is not None and (
            not isinstance(value, list) or not all(isinstance(s, str) for s in value)
        ):
            raise ConfigError(f"{where} must be a list of names, got {value!r}")
        if value is not None:
            value = [s.lower() for s in value]
    elif ann.startswith("list[int]"):
        if not isinstance(value, list) or not all(isinstance(s, int) for s in value):
            raise ConfigError(f"{where} must be a list of integers, got {value!r}")
    elif ann == "str" and not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, got {value!r}")
    return value


def _num(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ConfigError(f"{where} must be a number, got {v!r}")
    try:
        f = float(v)
    except OverflowError:
        raise ConfigError(f"{where} is too large: {v!r}") from None
    if f != f or f in (float("inf"), float("-inf")):
        raise ConfigError(f"{where} must be a finite number, got {v!r}")
    return f
