"""The classification recipe schema."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional

from distill.config import option
from distill.data.hf_source import HFDataSpec, check_columns, describe
from distill.errors import ConfigError
from distill.methods.base import METHODS, MethodConfig
from distill.tasks.ranking import RankingOptions
from distill.tasks.sweep import SweepSpec
from distill.train.config import TrainConfig


@dataclass(kw_only=True)
class ModelSpec:
    """A model: registered name (or timm:/torchvision:), builder options, optional weights."""

    name: str = option(help="model name, see `distill methods --models`")
    kwargs: dict[str, Any] = option(default_factory=dict, help="options of the model builder")
    checkpoint: Optional[str] = option(None, help="weights to start from (.safetensors/.pt, or a run/stage folder)")


@dataclass(kw_only=True)
class BlocksFromTeacher:
    """A shallower student of the teacher's family cut out of it (distill.models.prune_blocks)."""

    select: Literal["block_influence", "uniform"] = option(
        "block_influence", help="which of each stage's blocks to keep: block_influence (those that change their "
        "input most on the calibration images, ShortGPT) or uniform (evenly spaced); the first is always kept")
    calibration_images: int = option(256, min=1, help="training images the block influence is measured on")


@dataclass(kw_only=True)
class ClassificationStudentInit:
    from_teacher: BlocksFromTeacher = option(help="copy the teacher's stem, head and chosen blocks, e.g. "
                                             "resnet56 -> resnet20 (needs a teacher)")


@dataclass(kw_only=True)
class StudentSpec(ModelSpec):
    """The student; optionally initialised close to the teacher (same architecture) or cut out of it."""

    init: Optional[ClassificationStudentInit] = option(None, help="start from the teacher's weights: "
                                                       "{from_teacher: {select: block_influence}}")

    init_from_teacher: Optional[float] = option(None, min=0.0, help="start from the teacher's weights plus this "
                                                "much noise, (w_t + eps * w_rand) / sqrt(1 + eps^2) (random-teacher "
                                                "self-distillation); needs the teacher's architecture")


@dataclass(kw_only=True)
class CandidateSpec(StudentSpec):
    """A candidate student of `distill students`: a student spec, a label, and where its features are tapped."""

    label: Optional[str] = option(None, help="the name it is listed under (default: name(kwargs))")
    feature: Optional[str] = option(None, help="module path of its feature map before pooling, for the relation "
                                    "term (default: its last feature stage)")


@dataclass(kw_only=True)
class ClassificationStudents(RankingOptions):
    """`distill students`: candidate students ranked by DisWOT at initialisation, without training."""

    candidates: list[CandidateSpec] = option(default_factory=list, help="candidate students, each like the "
                                             "student section (name, kwargs, ...) with an optional label")
    teacher_feature: Optional[str] = option(None, help="module path of the teacher's feature map before pooling "
                                            "(default: its last feature stage)")


@dataclass(kw_only=True)
class TeacherSpec(ModelSpec):
    """The teacher: loaded from `checkpoint`, trained first in a teacher stage (`train`), or random."""

    train: Optional[TrainConfig] = option(None, help="train the teacher first (teacher stage)")
    method: Optional[MethodConfig] = option(None, registry=METHODS, help="teacher-stage objective (default: ce), "
                                            "e.g. {name: focal, gamma: 2}")
    augment: Optional[str] = option(None, help="teacher-stage augmentation (default: data.augment), e.g. strong")
    random_init: bool = option(False, help="use the randomly initialised model as the teacher (no training)")
    normalize: Literal["dataset", "none", "given"] = option(
        "dataset", help="the inputs this (loaded) teacher expects: dataset (the dataset's mean/std, as the student), "
        "none (raw [0, 1] pixels), given (its own mean and std below)")
    mean: Optional[list[float]] = option(None, help="normalize: given: per-channel mean of [0, 1] pixels")
    std: Optional[list[float]] = option(None, help="normalize: given: per-channel std of [0, 1] pixels")
    input_size: Optional[int] = option(None, min=1, help="resize inputs to this square size for this teacher")
    logits: Literal["auto", "live"] = option(
        "auto", help="auto: when the student's inputs are not augmented and the method needs only the teacher's "
        "logits, compute them once on the training images and look them up (as from `distill cache`); live: "
        "run the teacher on every batch")


@dataclass(kw_only=True)
class DataSpec:
    name: Optional[str] = option(None, help="dataset name: digits, fashion_mnist, cifar10, image_folder (or give hf)")
    hf: Optional[HFDataSpec] = option(None, help="a Hugging Face dataset instead of name: {path, split, eval_split, "
                                      "columns: {image, label}}")
    root: Optional[str] = option(None, help="where the dataset lives (folder or archive)")
    options: dict[str, Any] = option(default_factory=dict, help="extra options of the dataset builder")
    augment: str = option("default", help="training augmentation: default (the dataset's), none, flip, crop, crop_flip")
    train_subset: Optional[int] = option(None, min=1, help="use only N training examples (a fixed random subset)")
    hold_out: float = option(0.0, min=0.0, max=0.5, help="fraction of the training split held out (methods that "
                             "learn from a validation signal, e.g. tgeo_kd); never trained on directly")
    test_subset: Optional[int] = option(None, min=1, help="use only N test examples (a fixed random subset)")
    validation: Optional[float] = option(None, min=0.0, min_exclusive=True, max=0.5, help="evaluate on this fraction "
                                         "of the training split, held out of training, instead of the test split "
                                         "(how `distill sweep` scores trials: the test split stays unseen)")

    def __post_init__(self) -> None:
        if (self.name is None) == (self.hf is None):
            raise ConfigError("data: give exactly one of name (a registered dataset) or hf (a Hugging Face dataset)")
        if self.hf is not None and self.hf.eval_split is None:
            raise ConfigError("data.hf.eval_split: classification needs a test split, e.g. eval_split: test")
        if self.hf is not None:
            check_columns(self.hf, ("image", "label"))

    def label(self) -> str:
        """The dataset's name in summaries."""
        return self.name if self.hf is None else describe(self.hf)


@dataclass(kw_only=True)
class EvalSpec:
    batch_size: int = option(512, min=1, help="evaluation batch size")
    ece_bins: int = option(15, min=2, help="confidence bins of the calibration error")
    latency_runs: int = option(50, min=1, help="timed batch-1 forwards for the median CPU latency")
    linear_probe: bool = option(False, help="also report the accuracy of a logistic-regression probe on the "
                                "penultimate features (how self-supervised students are judged)")
    probe_train_samples: int = option(5000, min=10, help="training examples the probe is fitted on")


@dataclass(kw_only=True)
class ClassificationStoreSpec:
    """Stored teacher logits (full, C is small) of the unaugmented train and test images."""

    path: str = option(help="the store folder (`distill cache` writes it; `distill train` reads it instead of a teacher)")
    examples_per_shard: int = option(10000, min=1)
    batch_size: int = option(512, min=1, help="teacher forward batch while caching")


@dataclass(kw_only=True)
class ClassificationRecipe:
    """A classification distillation run: optional teacher stage, optional CE baseline, the method."""

    task: Literal["classification"] = "classification"
    name: str = option(help="run name; outputs go to <output_dir>/<name>/")
    seed: int = option(0, min=0, help="seed of model init, data order and augmentation")
    output_dir: str = option("runs", help="parent folder of run folders")
    data: DataSpec = option(help="the dataset")
    student: StudentSpec = option(help="the student model")
    teacher: Optional[TeacherSpec] = option(None, help="the teacher model (needed by every method but ce)")
    extra_teachers: list[TeacherSpec] = option(default_factory=list, help="more teachers (multi-teacher methods)")
    store: Optional[ClassificationStoreSpec] = option(None, help="teacher-signal store of teacher logits")
    method: MethodConfig = option(registry=METHODS, help="the distillation method and its options")
    train: TrainConfig = option(default_factory=TrainConfig, help="the student's training schedule")
    eval: EvalSpec = option(default_factory=EvalSpec)
    baseline: bool = option(False, help="also train the student with cross-entropy only (same init, schedule)")
    threads: Optional[int] = option(None, min=1, help="torch CPU threads (default: torch's choice)")
    progress: bool = option(True, help="show progress bars")
    imports: list[str] = option(default_factory=list, help="python modules to import first (register plugins)")
    students: Optional[ClassificationStudents] = option(None, help="candidate students for `distill students` "
                                                        "(ranked by DisWOT without training)")
    sweep: Optional[SweepSpec] = option(None, help="`distill sweep`: the keys to search and how (Optuna)")
