"""``plan()``: a validated suite -> its runs and its report cells. Pure: no I/O, no validation.

Every value it reads was checked and typed by ``load_suite``; planning only combines them: teachers
first (those some pair needs, each once), then students by pair, method, sweep point and seed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from kdbench.suite.identity import location_run_id_of
from kdbench.suite.schema import ChainConfig, SuiteVariant, TeacherConfig
from kdbench.suite.spec import RunSpec


class Plan(tuple):
    """The report cells of a suite, in order (a tuple of ``RunSpec``, one per cell and seed), and
    ``runs``: the distinct runs they need, each once, teachers first.

    A Vanilla student does not depend on the teacher, so one run can fill a cell in every pair with
    that student; cells keep their own descriptive fields (method label, pair), runs are unique by id.
    """

    runs: tuple[RunSpec, ...]
    #: what planning decided or waits for, in words (TAKD's choice of an assistant, and why)
    notes: tuple[str, ...]
    #: runs whose finished top-1 a choice needs (``plan(suite, finished=...)`` takes them)
    choice_runs: tuple[str, ...]

    def __new__(cls, cells: Iterable[RunSpec], notes: Iterable[str] = (), choice_runs: Iterable[str] = ()) -> Plan:
        plan = super().__new__(cls, cells)
        unique: dict[str, RunSpec] = {}
        for spec in plan:
            unique.setdefault(spec.run_id, spec)
        plan.runs = tuple(unique.values())
        plan.notes = tuple(notes)
        plan.choice_runs = tuple(dict.fromkeys(choice_runs))
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


def plan(suite, finished: Mapping[str, float] | None = None) -> Plan:  # suite: kdbench.suite.Suite
    """Every report cell of ``suite`` and the distinct runs behind them (``Plan.runs``).

    ``finished``: the top-1 of finished runs by id, for a chain whose assistant TAKD's rule chooses
    (``Plan.choice_runs`` says which it needs; without them the chain waits, and ``Plan.notes`` says so).
    """
    from kdbench.methods import METHODS
    from kdbench.models import model_feature_info

    teachers: dict[str, RunSpec] = {}
    students: dict[tuple[str, str, str], RunSpec] = {}
    notes: list[str] = []
    choice_runs: list[str] = []
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
                        teacher_sha256=source.checkpoint_sha256 if uses_teacher else None,
                        models=variant.options_of(student, teacher if uses_teacher else None),
                        suite=suite.name,
                        method=method.label,
                        sweep=relevant,
                        not_applicable=reason,
                        pair_teacher=teacher,
                    )
                    spec = _with_legacy_id(spec, None)
                    students.setdefault((spec.run_id, spec.method, teacher), spec)
        for chain in variant.chains:
            chain_specs: list[RunSpec] = []
            if chain.choices:
                chosen, note, needed = _choose_assistant(chain, by_name[chain.models[0]], variant, suite.name, finished)
                notes.append(note)
                choice_runs += [spec.run_id for spec in needed]
                chain_specs += needed
                if chosen is not None:
                    chain_specs += _chain_runs(chosen, by_name[chain.models[0]], variant, suite.name)
            else:
                chain_specs += _chain_runs(chain, by_name[chain.models[0]], variant, suite.name)
            for spec in chain_specs:
                if spec.kind == "teacher":
                    teachers.setdefault(spec.run_id, spec)
                else:
                    students.setdefault((spec.run_id, spec.method, spec.pair_teacher), spec)
    return Plan([*teachers.values(), *students.values()], notes, choice_runs)


def _scratch_run(model: str, seed: int, variant: SuiteVariant, suite_name: str, pair_teacher: str) -> RunSpec:
    """``model`` trained alone (Vanilla), as a pair's Vanilla cell plans it (the same run id)."""
    return RunSpec(
        kind="student",
        dataset=variant.dataset.as_dict(),
        schedule=variant.student_schedule(pair_teacher, model).as_dict(),
        training=variant.training.as_dict(),
        seed=seed,
        student=model,
        teacher=None,
        terms=(("vanilla", {}),),
        ce_weight=1.0,
        models=variant.options_of(model),
        suite=suite_name,
        method="Vanilla",
        sweep={k: v for k, v in variant.swept.items() if not k.startswith("methods.")},
        pair_teacher=pair_teacher,
    )


def _choose_assistant(
    chain: ChainConfig,
    root: TeacherConfig,
    variant: SuiteVariant,
    suite_name: str,
    finished: Mapping[str, float] | None,
) -> tuple[ChainConfig | None, str, list[RunSpec]]:
    """TAKD's rule (Mirzadeh et al. 2020): the assistant is the candidate whose accuracy is closest to
    the mean of the teacher's and the student's. Accuracies: the teacher run's top-1 and the mean over
    seeds of each model trained from scratch (Vanilla). The chain with the chosen assistant (None
    until every needed run finished), the sentence saying which and why, and the runs it needs."""
    (position, candidates), *_ = chain.choices.items()
    student = chain.models[-1]
    teacher_run = _teacher_run(root, variant, suite_name)
    needed = [teacher_run] + [
        _scratch_run(model, seed, variant, suite_name, chain.models[0])
        for model in (*candidates, student)
        for seed in variant.seeds
    ]
    finished = finished or {}
    missing = [spec.run_id for spec in needed if spec.run_id not in finished]
    if missing:
        note = (
            f"chain {chain.label}: the assistant is chosen among {', '.join(candidates)} by TAKD's rule once "
            f"the teacher and the models trained from scratch finished ({len(missing)} of {len(needed)} runs "
            "still to finish): kdbench run trains them; run it again to train the chain"
        )
        return None, note, needed

    def accuracy(model: str) -> float:
        values = [finished[spec.run_id] for spec in needed[1:] if spec.student == model]
        return sum(values) / len(values)

    teacher_accuracy, student_accuracy = finished[teacher_run.run_id], accuracy(student)
    target = (teacher_accuracy + student_accuracy) / 2
    chosen = min(candidates, key=lambda model: abs(accuracy(model) - target))  # ties: the first listed
    shown = ", ".join(f"{model} {accuracy(model):.2f}" for model in candidates)
    note = (
        f"chain {chain.label}: assistant {chosen} (TAKD's rule: the candidate closest to {target:.2f}, the mean "
        f"of teacher {chain.models[0]} {teacher_accuracy:.2f} and student {student} {student_accuracy:.2f} "
        f"trained from scratch; candidates from scratch: {shown})"
    )
    models = tuple(chosen if i == position else model for i, model in enumerate(chain.models))
    return ChainConfig(chain.label, models, chain.methods), note, needed


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
                teacher_sha256=root.checkpoint_sha256 if previous is None else None,
                models=variant.options_of(student, teacher),
                suite=suite_name,
                method=chain.label,
                sweep=relevant,
                not_applicable=reason,
                pair_teacher=chain.models[0],
            )
            spec = _with_legacy_id(spec, previous)
            runs.append(spec)
            previous = spec
    return runs


def _with_legacy_id(spec: RunSpec, previous: RunSpec | None) -> RunSpec:
    """``spec`` with the id older kdbench gave it (``RunSpec.legacy_run_id``), where that differs: its
    teacher file by location, or (a chain's later link) its teacher run's own older id."""
    config = spec.config()
    if previous is not None and previous.legacy_run_id:
        config["teacher_run"] = previous.legacy_run_id
    elif not spec.teacher_sha256:
        return spec
    legacy = location_run_id_of(config)
    return replace(spec, legacy_run_id=legacy) if legacy != spec.run_id else spec


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
