"""``plan()``: a validated suite -> its runs and its report cells. Pure: no I/O, no validation.

Every value it reads was checked and typed by ``load_suite``; planning only combines them: teachers
first (those some pair needs, each once), then students by pair, method, sweep point and seed.
"""

from __future__ import annotations

from collections.abc import Iterable

from kdbench.suite.schema import ChainConfig, SuiteVariant, TeacherConfig
from kdbench.suite.spec import RunSpec


class Plan(tuple):
    """The report cells of a suite, in order (a tuple of ``RunSpec``, one per cell and seed), and
    ``runs``: the distinct runs they need, each once, teachers first.

    A Vanilla student does not depend on the teacher, so one run can fill a cell in every pair with
    that student; cells keep their own descriptive fields (method label, pair), runs are unique by id.
    """

    runs: tuple[RunSpec, ...]

    def __new__(cls, cells: Iterable[RunSpec]) -> Plan:
        plan = super().__new__(cls, cells)
        unique: dict[str, RunSpec] = {}
        for spec in plan:
            unique.setdefault(spec.run_id, spec)
        plan.runs = tuple(unique.values())
        return plan

    @property
    def cells(self) -> tuple[RunSpec, ...]:
        return tuple(self)


def _teacher_run(teacher: TeacherConfig, variant: SuiteVariant, suite_name: str) -> RunSpec:
    return RunSpec(
        kind="teacher",
        dataset=variant.dataset.as_dict(),
        schedule=teacher.schedule.as_dict(),
        training=variant.training.as_dict(),
        seed=teacher.seed,
        student=teacher.name,
        teacher=None,
        terms=teacher.terms,
        ce_weight=1.0,
        models=variant.options_of(teacher.name),
        suite=suite_name,
        method="Teacher",
        # a teacher is the same run for every method and seed of the sweep
        sweep={k: v for k, v in variant.swept.items() if not k.startswith(("methods.", "seeds", "pairs"))},
    )


def plan(suite) -> Plan:  # suite: kdbench.suite.Suite
    """Every report cell of ``suite`` and the distinct runs behind them (``Plan.runs``)."""
    from kdbench.methods import METHODS
    from kdbench.models import model_feature_info

    teachers: dict[str, RunSpec] = {}
    students: dict[tuple[str, str, str], RunSpec] = {}
    for variant in suite.variants:
        by_name = {t.name: t for t in variant.teachers}
        dataset = variant.dataset.as_dict()
        training = variant.training.as_dict()
        for teacher, student in variant.pairs:
            schedule = variant.student_schedule(teacher, student).as_dict()
            source = by_name[teacher]
            teacher_spec = None if source.checkpoint else _teacher_run(source, variant, suite.name)
            if teacher_spec is not None:  # only teachers of some pair are trained
                teachers.setdefault(teacher_spec.run_id, teacher_spec)
            for method in variant.methods_of(teacher, student):
                relevant = {
                    k: v
                    for k, v in variant.swept.items()
                    if not k.startswith("methods.") or k.split(".")[1] == method.label
                }
                reason = None
                for name, params in method.terms:
                    reason = reason or METHODS.get(name).not_applicable(
                        model_feature_info(teacher), model_feature_info(student), params
                    )
                terms = _with_teacher_head(method.terms, teacher_spec)
                uses_teacher = any(METHODS.get(n).needs_teacher for n, _ in method.terms)
                for seed in variant.seeds:
                    if any(e.matches(teacher, student, method.label, seed) for e in variant.excludes):
                        continue
                    spec = RunSpec(
                        kind="student",
                        dataset=dataset,
                        schedule=schedule,
                        training=training,
                        seed=seed,
                        student=student,
                        teacher=teacher if uses_teacher else None,
                        terms=terms,
                        ce_weight=method.ce_weight,
                        teacher_run=teacher_spec.run_id if uses_teacher and teacher_spec else None,
                        teacher_checkpoint=source.checkpoint if uses_teacher else None,
                        models=variant.options_of(student, teacher if uses_teacher else None),
                        suite=suite.name,
                        method=method.label,
                        sweep=relevant,
                        not_applicable=reason,
                        pair_teacher=teacher,
                    )
                    students.setdefault((spec.run_id, spec.method, teacher), spec)
        for chain in variant.chains:
            for spec in _chain_runs(chain, by_name[chain.models[0]], variant, suite.name):
                if spec.kind == "teacher":
                    teachers.setdefault(spec.run_id, spec)
                else:
                    students.setdefault((spec.run_id, spec.method, spec.pair_teacher), spec)
    return Plan([*teachers.values(), *students.values()])


def _with_teacher_head(terms: tuple[tuple[str, dict], ...], teacher: RunSpec | None) -> tuple[tuple[str, dict], ...]:
    """A method that distils subclass logits (``subclass``) gets its teacher's subclasses per class (1 for
    a teacher without a subclass head: its logits)."""
    from kdbench.methods import METHODS
    from kdbench.models.subclass_head import SUBCLASSES_KEY, head_subclasses

    teacher_head = head_subclasses(teacher.terms) if teacher is not None else None
    filled = []
    for name, params in terms:
        cls = METHODS.get(name)
        if getattr(cls, "gives_subclass_head", False) and cls.needs_teacher:
            params = {**params, SUBCLASSES_KEY: teacher_head or 1}
        filled.append((name, params))
    return tuple(filled)


def _chain_runs(chain: ChainConfig, root: TeacherConfig, variant: SuiteVariant, suite_name: str) -> list[RunSpec]:
    """The runs of one chain, link after link, per seed: each link's teacher is the previous link's run
    (``teacher_run``), so a link's id depends on every link before it. Cells: the chain's label in the
    column (first teacher, link's student)."""
    from kdbench.methods import METHODS
    from kdbench.models import model_feature_info

    root_spec = None if root.checkpoint else _teacher_run(root, variant, suite_name)
    runs = [root_spec] if root_spec is not None else []
    relevant = {k: v for k, v in variant.swept.items() if not k.startswith("methods.")}
    for seed in variant.seeds:
        previous = root_spec
        for teacher, student, method in zip(chain.models[:-1], chain.models[1:], chain.methods, strict=True):
            terms, reason = _with_teacher_head(method.terms, previous), None
            for name, params in method.terms:
                reason = reason or METHODS.get(name).not_applicable(
                    model_feature_info(teacher), model_feature_info(student), params
                )
            spec = RunSpec(
                kind="student",
                dataset=variant.dataset.as_dict(),
                schedule=variant.student_schedule(teacher, student).as_dict(),
                training=variant.training.as_dict(),
                seed=seed,
                student=student,
                teacher=teacher,
                terms=terms,
                ce_weight=method.ce_weight,
                teacher_run=previous.run_id if previous is not None else None,
                teacher_checkpoint=root.checkpoint if previous is None else None,
                models=variant.options_of(student, teacher),
                suite=suite_name,
                method=chain.label,
                sweep=relevant,
                not_applicable=reason,
                pair_teacher=chain.models[0],
            )
            runs.append(spec)
            previous = spec
    return runs


def chains_of(runs: Iterable[RunSpec]) -> list[list[RunSpec]]:
    """The chains among ``runs`` (in plan order): each a list from its first teacher run to its last
    student, where every run's ``teacher_run`` is the run before it and some link's teacher is itself
    a student run (TAKD's assistant). For ``kdbench status``: where each chain stands."""
    runs = list(runs)
    by_id = {spec.run_id: spec for spec in runs}
    taught: dict[str, list[RunSpec]] = {}
    for spec in runs:
        if spec.teacher_run is not None:
            taught.setdefault(spec.teacher_run, []).append(spec)
    chains: list[list[RunSpec]] = []

    def follow(path: list[RunSpec]) -> None:
        students = [
            s for s in taught.get(path[-1].run_id, []) if path[-1].kind == "teacher" or s.method == path[-1].method
        ]
        if not students:
            if len(path) > 2:
                chains.append(path)
            return
        for student in students:
            follow([*path, student])

    for spec in runs:
        if spec.kind == "teacher" or (spec.teacher_run is None or spec.teacher_run not in by_id):
            follow([spec])
    return chains
