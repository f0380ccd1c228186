"""CRD: Tian, Krishnan, Isola, "Contrastive Representation Distillation" (ICLR 2020).

Reference code: the CRD code (RepDistiller ``crd/criterion.py`` ``CRDLoss``, ``ContrastLoss``,
``Embed``; ``crd/memory.py`` ``ContrastMemory``; the sampling data set ``dataset/cifar100.py``
``CIFAR100InstanceSample``; wired in ``train_student.py`` / ``helper/loops.py`` with ``--distill crd
-a 0 -b 0.8``, and ``-a 1 -b 0.8`` for CRD+KD).

Features: the pooled embedding (the code's ``feat[-1]``) of each network through its own trainable
linear embedding to ``feat_dim`` (128) dimensions, L2-normalised (``Embed``). Two memory banks of
one ``feat_dim`` row per training image (student and teacher embeddings), initialised uniform in
[-s, s] with s = 1 / sqrt(feat_dim / 3). Per image i of a batch: ``nce_k`` (16,384) negative
indices and one positive (i itself in ``mode: exact``; a random image of i's class in ``relax``);
the negatives are drawn from the other classes' images, without replacement unless a class has
fewer than ``nce_k`` others (``CIFAR100InstanceSample``). Scores ``exp(<bank row, anchor> / T)``
(T = ``nce_t`` 0.07): the teacher's embedding against the student bank and the student's against
the teacher bank, each divided by its normaliser Z, set once at the first batch to the mean score
times the bank size. Loss per side (``ContrastLoss``, NCE with noise 1/N): ``-(sum_i log(P_i0 /
(P_i0 + K/N + 1e-7)) + sum_ij log((K/N) / (P_ij + K/N + 1e-7))) / batch``; the two sides summed.
After scoring, each image's row in both banks moves to ``momentum * row + (1 - momentum) *
embedding`` (``nce_m`` 0.5) and is re-normalised. Defaults: weight (beta) 0.8, feat_dim 128,
nce_k 16384, nce_t 0.07, nce_m 0.5, mode exact, CE weight 1. CRD+KD is ``use: [kd, crd]`` with
``ce_weight: 1`` and ``kd: {weight: 1}`` (the README's ``-r 1 -a 1 -b 0.8``).

State: both banks, the normalisers and the sampler's seed and draw count are in the state dict
(buffers and extra state), so a resumed run continues exactly; the negatives of each step come from
a generator seeded by (seed, draw count), the seed itself drawn at construction from the run's
``method-init`` RNG. The training loop passes each image's dataset index (``needs_indices``) and
the training labels at construction (``data_facts``); a term built without them (a unit test, a
benchmark) is unbound: a bank of ``nce_k + 1`` rows, positives at rows 0..B-1, negatives uniform over
the bank (the code's own ``ContrastMemory`` fallback without contrast indices), and the bank is
never written (no image identity to write it under).

Deliberate differences: the scores are one product of the anchor embeddings with the whole bank,
then gathered at the sampled indices: the same dot products as the code's gathered ``bmm``, without
materialising batch x (K + 1) x 128 rows (537 MB per bank at batch 64); the negatives come from a
seeded generator on the training device instead of NumPy's unseeded global RNG in the loader
workers (same distribution); the bank is not written outside training mode (the code never
scores outside training).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from kdbench.methods import METHODS
from kdbench.methods.base import DistillLoss, full_precision
from kdbench.models.base import Features, StagedModel

#: the code's ``eps`` in ``ContrastLoss``
NCE_EPS = 1e-7
MODES = ("exact", "relax")


@full_precision
def l2_normalise(x: torch.Tensor) -> torch.Tensor:
    """The code's ``Normalize(2)``: x / ||x|| (no epsilon), at float32 or wider."""
    return x / x.pow(2).sum(1, keepdim=True).pow(0.5)


@full_precision
def nce_loss(scores: torch.Tensor, bank_size: int) -> torch.Tensor:
    """The code's ``ContrastLoss`` on (B, K + 1) normalised scores, the positive in column 0."""
    noise = (scores.shape[1] - 1) / bank_size  # K * Pn
    positive = torch.log(scores[:, 0] / (scores[:, 0] + noise + NCE_EPS))
    negative = torch.log(noise / (scores[:, 1:] + noise + NCE_EPS))
    return -(positive.sum() + negative.sum()) / scores.shape[0]


class ContrastSampler:
    """Per-class positive and negative indices over the training labels (``CIFAR100InstanceSample``)."""

    def __init__(self, train_labels: torch.Tensor, negatives: int):
        labels = train_labels.long().cpu()
        self.num_classes = int(labels.max()) + 1 if len(labels) else 0
        counts = torch.bincount(labels, minlength=self.num_classes)
        others = len(labels) - counts
        self.negatives = negatives
        #: sampling without replacement for every class, with replacement for every class, or mixed
        self.replacement = "never" if bool((others >= negatives).all()) else "always"
        if self.replacement == "always" and bool((others >= negatives).any()):
            self.replacement = "mixed"
        self.labels = labels
        self.order = torch.argsort(labels, stable=True)  # indices grouped by class
        self.starts = torch.cumsum(counts, 0) - counts
        self.counts = counts

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"labels": self.labels, "order": self.order, "starts": self.starts, "counts": self.counts}


@METHODS.register("crd", aliases=("CRD",))
class CRD(DistillLoss):
    """Contrastive representation distillation with the CRD code's memory banks (see the module docstring)."""

    needs_indices = True
    data_facts = ("train_labels",)

    def __init__(
        self,
        teacher: StagedModel,
        student: StagedModel,
        train_labels: torch.Tensor | None = None,
        *,
        weight: float = 0.8,
        feat_dim: int = 128,
        nce_k: int = 16384,
        nce_t: float = 0.07,
        nce_m: float = 0.5,
        mode: str = "exact",
    ):
        super().__init__(teacher, student, weight=weight)
        problems = self.parameter_problems(dict(feat_dim=feat_dim, nce_k=nce_k, nce_t=nce_t, nce_m=nce_m, mode=mode))
        if problems:
            raise ValueError("; ".join(problems))
        self.nce_k, self.nce_t, self.nce_m, self.mode = nce_k, nce_t, nce_m, mode
        self.embed_student = nn.Linear(student.embedding_dim, feat_dim)
        self.embed_teacher = nn.Linear(self.teacher.embedding_dim, feat_dim)
        self.bound = train_labels is not None
        bank_size = len(train_labels) if train_labels is not None else nce_k + 1
        self.bank_size = bank_size
        stdv = 1.0 / (feat_dim / 3) ** 0.5
        self.register_buffer("memory_student", torch.rand(bank_size, feat_dim).mul_(2 * stdv).add_(-stdv))
        self.register_buffer("memory_teacher", torch.rand(bank_size, feat_dim).mul_(2 * stdv).add_(-stdv))
        #: Z of the student-anchor and teacher-anchor scores; negative until the first training batch sets it
        self.register_buffer("normalisers", torch.tensor([-1.0, -1.0]))
        self.sampler_seed = int(torch.randint(0, 2**62, (1,)))
        self.draws = 0
        self.sampler: ContrastSampler | None = None
        if train_labels is not None:
            self.sampler = ContrastSampler(train_labels, nce_k)
            for name, value in self.sampler.tensors().items():
                self.register_buffer(f"sampler_{name}", value, persistent=False)

    @classmethod
    def parameter_problems(cls, params: dict[str, Any]) -> list[str]:
        problems = []
        mode = params.get("mode")
        if mode is not None and mode not in MODES:
            problems.append(f"crd.mode: {mode!r} is not one of {', '.join(MODES)} (the CRD code's --mode)")
        for key in ("feat_dim", "nce_k"):
            value = params.get(key)
            if isinstance(value, int) and value < 1:
                problems.append(f"crd.{key}: {value} is below 1")
        if isinstance(params.get("nce_t"), (int, float)) and params["nce_t"] <= 0:
            problems.append(f"crd.nce_t: {params['nce_t']} must be positive (the softmax temperature)")
        momentum = params.get("nce_m")
        if isinstance(momentum, (int, float)) and not 0 <= momentum <= 1:
            problems.append(f"crd.nce_m: {momentum} is not in [0, 1] (the bank's momentum)")
        return problems

    # -- sampler state: Python numbers, in the state dict as extra state (no device sync per step) --
    def get_extra_state(self) -> dict[str, int]:
        return {"sampler_seed": self.sampler_seed, "draws": self.draws}

    def set_extra_state(self, state: dict[str, int]) -> None:
        self.sampler_seed, self.draws = int(state["sampler_seed"]), int(state["draws"])

    def _generator(self, device: torch.device) -> torch.Generator:
        generator = torch.Generator(device=device)
        generator.manual_seed((self.sampler_seed * 1_000_003 + self.draws * 7_919) % 2**63)
        return generator

    def contrast_indices(self, labels: torch.Tensor, indices: torch.Tensor | None) -> torch.Tensor:
        """(B, K + 1) bank rows per image: the positive first, then ``nce_k`` negatives."""
        device = self.memory_student.device
        generator = self._generator(device)
        batch = len(labels)
        if not self.bound:  # the code's ContrastMemory without contrast indices: uniform, positive in front
            rows = torch.randint(0, self.bank_size, (batch, self.nce_k + 1), generator=generator, device=device)
            rows[:, 0] = torch.arange(batch, device=device)
            return rows
        order, starts, counts = self.sampler_order, self.sampler_starts[labels], self.sampler_counts[labels]
        if self.mode == "exact":
            positive = indices
        else:  # relax: a random image of the same class
            offset = (torch.rand(batch, generator=generator, device=device) * counts).long().clamp_max(counts - 1)
            positive = order[starts + offset]
        negatives = self._negatives(labels, starts, counts, generator)
        return torch.cat([positive[:, None], negatives], dim=1)

    def _negatives(
        self, labels: torch.Tensor, starts: torch.Tensor, counts: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        device, batch, k = labels.device, len(labels), self.nce_k
        with_replacement = without = None
        if self.sampler.replacement in ("always", "mixed"):
            # uniform over the other classes' images: the r-th of them in class order, skipping i's class
            others = (self.bank_size - counts)[:, None]
            r = (torch.rand(batch, k, generator=generator, device=device) * others).long().clamp_max(others - 1)
            positions = r + (r >= starts[:, None]) * counts[:, None]
            with_replacement = self.sampler_order[positions]
        if self.sampler.replacement in ("never", "mixed"):
            # a uniform subset of size k: the k smallest of random keys, the own class's keys pushed out
            keys = torch.rand(batch, self.bank_size, generator=generator, device=device)
            keys = keys.masked_fill(self.sampler_labels[None, :] == labels[:, None], 2.0)
            without = keys.topk(k, dim=1, largest=False, sorted=False).indices
        if with_replacement is None:
            return without
        if without is None:
            return with_replacement
        needs_replacement = (self.bank_size - counts < k)[:, None]
        return torch.where(needs_replacement, with_replacement, without)

    def forward(
        self, student: Features, teacher: Features, labels: torch.Tensor, indices: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        if self.bound and indices is None:
            raise ValueError("crd needs each image's index in the training set (indices=...) for its memory bank")
        student_embedding = l2_normalise(self.embed_student(student.embedding))
        teacher_embedding = l2_normalise(self.embed_teacher(teacher.embedding))
        rows = self.contrast_indices(labels, indices)
        loss = self._contrast(student_embedding, teacher_embedding, rows)
        if self.training:
            self.draws += 1
            if self.bound:
                self._update_memory(student_embedding.detach(), teacher_embedding.detach(), indices)
        return {"crd": self.weight * loss}

    @full_precision
    def _contrast(
        self, student_embedding: torch.Tensor, teacher_embedding: torch.Tensor, rows: torch.Tensor
    ) -> torch.Tensor:
        # teacher anchor against the student bank, student anchor against the teacher bank (memory_v1 / v2)
        teacher_scores = self._scores(self.memory_student, teacher_embedding, rows)
        student_scores = self._scores(self.memory_teacher, student_embedding, rows)
        unset = self.normalisers < 0
        first = torch.stack([student_scores.detach().mean(), teacher_scores.detach().mean()]) * self.bank_size
        normalisers = torch.where(unset, first, self.normalisers)
        if self.training:
            self.normalisers.copy_(normalisers)
        student_scores = student_scores / normalisers[0]
        teacher_scores = teacher_scores / normalisers[1]
        return nce_loss(student_scores, self.bank_size) + nce_loss(teacher_scores, self.bank_size)

    def _scores(self, bank: torch.Tensor, anchor: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """exp(<bank[rows[i, j]], anchor[i]> / T): one product with the whole bank, then gathered."""
        products = anchor @ bank.detach().clone().t()  # (B, N); a copy, since the bank is written before backward
        return torch.exp(products.gather(1, rows) / self.nce_t)

    @torch.no_grad()
    def _update_memory(
        self, student_embedding: torch.Tensor, teacher_embedding: torch.Tensor, indices: torch.Tensor
    ) -> None:
        for bank, embedding in ((self.memory_student, student_embedding), (self.memory_teacher, teacher_embedding)):
            moved = bank.index_select(0, indices) * self.nce_m + embedding.to(bank.dtype) * (1 - self.nce_m)
            bank.index_copy_(0, indices, l2_normalise(moved))
