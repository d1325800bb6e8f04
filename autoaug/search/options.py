"""What a search is asked to do: its options, its budget, and the resources each trial gets."""
from __future__ import annotations

import json
import math
import os
import random
import re
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from autoaug.datasets import DATASETS, ArrayData, load_dataset, split_train_val
from autoaug.errors import AutoaugError
from autoaug.models import MODELS
from autoaug.results import check_out_folder
from autoaug.search.space import SearchSpace
from autoaug.search.synthetic import SYNTHETIC
from autoaug.seeding import derive_seed
from autoaug.trainer import TrainConfig, auto_batch_size

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}
ALGOS = ("nevergrad", "random", "pbt")
LOGGERS = {"tensorboard": "tensorboardX", "mlflow": "mlflow"}  # --log name -> the package Ray Tune's callback needs
SCHEDULERS = ("asha", "fifo")
DEFAULT_GPU_SHARE = 0.25  # four proxy-net trials share a GPU: one alone leaves most of it idle
# options a resumed search may change; everything else comes from the interrupted search's run.json
RESUME_MAY_CHANGE = ("out", "resume", "address", "device", "gpus_per_trial", "cpus_per_trial", "download")
RESUME_MAY_EXTEND = ("budget",)  # given (not the default), it replaces the saved one: see outcome.check_extension
DEFAULT_EPOCHS = 5
# Short trials favour weak augmentation, so a trial trains a sizeable share of the target length and
# ASHA judges it no earlier than half way (see tune.grace_period).
TRIAL_FRACTION = 0.5
# streams below the search seed, each a (stream, n) path: trial n's training seed, the head-to-head's seed n
TRIAL_SEEDS, RETRAIN_SEEDS = 0, 1


@dataclass(frozen=True)
class Budget:
    """A number of trials, or a wall-clock duration in seconds."""

    trials: int | None = None
    seconds: float | None = None

    def __str__(self) -> str:
        return f"{self.trials} trials" if self.trials is not None else f"{self.seconds:g} s"


def parse_budget(text: str | int) -> Budget:
    """``200`` trials, or a duration such as ``90s``, ``30m``, ``1.5h``."""
    text = str(text).strip().lower()
    if text.isdigit() and int(text) > 0:
        return Budget(trials=int(text))
    match = _DURATION.match(text)
    if match and float(match.group(1)) > 0:
        return Budget(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    raise AutoaugError(f"budget must be a positive number of trials (200) or a duration (90s, 30m, 2h), got {text!r}")


@dataclass(frozen=True)
class SearchOptions:
    """Everything a search needs; ``run.json`` records it, and ``--resume`` reads it back."""

    dataset: str = "digits"
    data_dir: str | None = None
    space: str = "default"
    model: str = "auto"  # proxy where a GPU is there, proxy_tiny on CPU (see resolve_model)
    epochs: int | None = None  # None: TRIAL_FRACTION of target_epochs, else DEFAULT_EPOCHS (see trial_epochs)
    target_epochs: int | None = None  # the training length the policy is for; the head-to-head trains this long
    budget: str = "20"
    algo: str = "nevergrad"
    scheduler: str = "asha"
    gpus_per_trial: float | None = None  # None: a quarter of a GPU where the cluster has one, else 0
    cpus_per_trial: int = 1
    device: str = "auto"
    train_size: int | None = None
    val_size: float = 0.2  # a fraction of the training split, or a number of images (>= 1)
    batch_size: int | None = None  # None: the trainer's auto_batch_size of the training part
    lr: float = TrainConfig.lr  # per 512 images; scaled linearly to the batch size (see trainer.scaled_lr)
    seed: int = 0
    out: str = "autoaug-runs/search"
    resume: bool = False
    address: str | None = None
    top_k: int = 3
    top_k_epochs: int | None = None  # None: twice ``epochs``
    top_k_seeds: int = 2
    download: bool = False  # fetch a named dataset's files into data_dir if absent
    log: tuple[str, ...] = ()  # Ray Tune logger callbacks: tensorboard, mlflow

    def __post_init__(self) -> None:
        object.__setattr__(self, "log", tuple(self.log))  # run.json gives a list back
        _check_loggers(self.log)
        for key, allowed in (("algo", ALGOS), ("scheduler", SCHEDULERS)):
            if getattr(self, key) not in allowed:
                raise AutoaugError(f"{key} must be one of {', '.join(allowed)}, got {getattr(self, key)!r}")
        _at_least(self, ("cpus_per_trial",), 1)
        for key in ("epochs", "target_epochs"):
            if getattr(self, key) is not None:
                _at_least(self, (key,), 1)
        if self.batch_size is not None:
            _at_least(self, ("batch_size",), 1)
        _at_least(self, ("top_k",), 0)
        _at_least(self, ("top_k_seeds",), 2)  # one seed cannot tell luck from a better policy
        if self.top_k_epochs is not None:
            _at_least(self, ("top_k_epochs",), 1)
        if self.train_size is not None:
            _at_least(self, ("train_size",), 1)
        if self.val_size <= 0 or (self.val_size >= 1 and not float(self.val_size).is_integer()):
            raise AutoaugError(f"val_size must be a fraction in (0, 1) or a whole number of images, got {self.val_size}")
        if self.gpus_per_trial is not None and self.gpus_per_trial < 0:
            raise AutoaugError(f"gpus_per_trial must be >= 0, got {self.gpus_per_trial}")
        if not (self.device in ("auto", "cpu") or self.device.startswith("cuda")):
            raise AutoaugError(f"device must be auto, cpu or cuda[:N], got {self.device!r}")
        if self.lr <= 0:
            raise AutoaugError(f"lr must be > 0 (the rate per 512 images), got {self.lr}")
        parse_budget(self.budget)

    @property
    def trial_epochs(self) -> int:
        """Epochs per trial: as given, else a TRIAL_FRACTION of ``target_epochs``, else DEFAULT_EPOCHS."""
        if self.epochs is not None:
            return self.epochs
        if self.target_epochs is not None:
            return max(1, math.ceil(TRIAL_FRACTION * self.target_epochs))
        return DEFAULT_EPOCHS

    @property
    def retrain_epochs(self) -> int:
        """Epochs of the head-to-head runs: ``top_k_epochs``, else ``target_epochs``, else twice a trial's."""
        return self.top_k_epochs or self.target_epochs or 2 * self.trial_epochs

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_loggers(names: tuple[str, ...]) -> None:
    import importlib.util
    for name in names:
        if name not in LOGGERS:
            raise AutoaugError(f"log must be one of {', '.join(LOGGERS)}, got {name!r}")
        if importlib.util.find_spec(LOGGERS[name]) is None:
            raise AutoaugError(f"--log {name} needs {LOGGERS[name]}: pip install 'autoaug[{name}]'")
    # mlflow-skinny is importable as mlflow but has no SQL store: the local mlflow.db would fail once trials ran
    local_store = "mlflow" in names and not os.environ.get("MLFLOW_TRACKING_URI")
    if local_store and any(importlib.util.find_spec(p) is None for p in ("sqlalchemy", "alembic")):
        raise AutoaugError("--log mlflow keeps its runs in OUT/mlflow.db (sqlite), which needs sqlalchemy and alembic "
                           "(mlflow-skinny has neither): pip install 'autoaug[mlflow]', or set MLFLOW_TRACKING_URI to "
                           "your tracking server")


def _at_least(options: SearchOptions, keys: tuple[str, ...], low: int) -> None:
    for key in keys:
        value = getattr(options, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise AutoaugError(f"{key} must be an integer >= {low}, got {value!r}")


def resumed_options(saved: dict[str, Any], given: SearchOptions) -> SearchOptions:
    """The interrupted search's options, with the few that may change taken from ``given``.

    An option given with a value other than both its default and the saved one is a conflict: the
    search cannot change what it searches halfway through.
    """
    known = {f.name for f in fields(SearchOptions)}
    base = SearchOptions(**{k: v for k, v in saved.items() if k in known})
    defaults = SearchOptions()
    for key in sorted(known - set(RESUME_MAY_CHANGE) - set(RESUME_MAY_EXTEND)):
        value = getattr(given, key)
        if value != getattr(defaults, key) and value != getattr(base, key):
            raise AutoaugError(f"--resume continues the search in {given.out} with its own {key} "
                               f"({getattr(base, key)!r}); leave out {key} or give that value")
    extended = {key: getattr(given, key) for key in RESUME_MAY_EXTEND if getattr(given, key) != getattr(defaults, key)}
    return replace(base, **{key: getattr(given, key) for key in RESUME_MAY_CHANGE}, **extended)


def resolve_gpus_per_trial(requested: float | None, *, device: str, cluster_gpus: float, local_gpus: int,
                           joined_cluster: bool) -> float:
    """The GPU share each trial asks Ray for.

    0 where trials would find no GPU: a GPU request there would leave every trial pending forever.
    On a local cluster the driver's torch must see a GPU too (a CPU-only torch cannot use one Ray
    detected); on a joined cluster the workers' GPUs count even if the driver has none.
    """
    usable = cluster_gpus if joined_cluster else min(cluster_gpus, local_gpus)
    if device.startswith("cuda") and usable == 0:
        raise AutoaugError("--device cuda was asked for, but the Ray cluster has no GPU torch can use "
                           "(use --device auto or cpu)")
    if device == "cpu" or usable == 0:
        return 0.0
    share = DEFAULT_GPU_SHARE if requested is None else requested
    if share > usable:
        raise AutoaugError(f"gpus_per_trial {share:g} is more than the {usable:g} GPUs of the cluster")
    return share


def resolve_model(name: str, *, device: str) -> str:
    """``auto`` is the proxy net where trials train on a GPU, and its tiny variant on CPU.

    The full proxy net trains about 90 images/s on one CPU core, the tiny one about 1,000, so on CPU
    the tiny one is what makes a search of minutes possible.
    """
    if name == SYNTHETIC:  # no network: a score from the policy's parameters (autoaug.search.synthetic)
        return name
    if name != "auto":
        MODELS[name]  # an unknown model is an UnknownNameError listing the known ones
        return name
    import torch
    return "proxy" if device != "cpu" and torch.cuda.is_available() else "proxy_tiny"


def prepare(options: SearchOptions) -> SearchOptions:
    """Absolute paths and a checked output folder; on resume, the interrupted search's own options."""
    check_out_folder(options.out)
    out = Path(options.out).resolve()
    if options.resume:
        saved = read_run(out).get("options")
        if not (out / "tune").is_dir() or saved is None:
            raise AutoaugError(f"--resume: no interrupted search in {out} (expected {out / 'run.json'} and "
                               f"{out / 'tune'})")
        return resumed_options(saved, replace(options, out=str(out)))
    if (out / "tune").exists():
        raise AutoaugError(f"{out} already holds a search; pass --resume to continue it or choose another --out")
    paths: dict[str, Any] = {"out": str(out), "model": resolve_model(options.model, device=options.device),
                             "epochs": options.trial_epochs}
    for key in ("space", "data_dir", "dataset"):  # so that a resumed search may start from another folder
        value = getattr(options, key)
        if value and Path(value).exists() and not (key == "dataset" and value in DATASETS):
            paths[key] = str(Path(value).resolve())
    return replace(options, **paths)


def train_config(options: SearchOptions, space: SearchSpace) -> TrainConfig:
    """How each trial trains, with the search's seed (each trial trains with its own ``trial_seed`` of it);
    an unknown or unsuitable model is a one-line error before any trial runs."""
    # synthetic trials train nothing; the config names a real model so that it stays a valid TrainConfig
    model = "proxy_tiny" if options.model == SYNTHETIC else options.model
    config = TrainConfig(model=model, epochs=options.epochs, batch_size=options.batch_size, lr=options.lr,
                         seed=options.seed, device=options.device)
    if space.decode(space.sample(random.Random(0))).width_resolution is not None and \
            not MODELS[model].slimmable:
        slim = ", ".join(sorted(name for name, spec in MODELS.items() if spec.slimmable))
        raise AutoaugError(f"space {space.name} trains width/resolution sub-networks, which needs a slimmable "
                           f"model; {options.model} is not (slimmable: {slim})")
    return config


def trial_seed(search_seed: int, number: int) -> int:
    """The training seed of the search's trial ``number`` (the order the searcher proposed it in).

    Each trial has its own initial weights, batch order and augmentation draws, as independent
    evaluations must; the same search seed gives every trial the same seed again, on a rerun or a resume.
    """
    return derive_seed(search_seed, TRIAL_SEEDS, number)


def retrain_seeds(search_seed: int, count: int) -> tuple[int, ...]:
    """The head-to-head's seeds: the same for every contender (a paired comparison), none a trial's,
    and none another search seed's (``search_seed + 1000 + k`` shared all but one with the next seed)."""
    return tuple(derive_seed(search_seed, RETRAIN_SEEDS, k) for k in range(count))


def resolve_batch_size(options: SearchOptions, train: ArrayData) -> SearchOptions:
    """The options with ``batch_size`` set, so that ``run.json`` records what the trials used."""
    return options if options.batch_size is not None else replace(options, batch_size=auto_batch_size(len(train)))


def search_data(options: SearchOptions) -> tuple[ArrayData, ArrayData]:
    """``(train, validation)``, both carved from the training split: a search never sees the test split."""
    dataset = load_dataset(options.dataset, data_dir=options.data_dir, download=options.download)
    val_size = options.val_size if options.val_size < 1 else int(options.val_size)
    return split_train_val(dataset.train, val_size=val_size, seed=options.seed, train_size=options.train_size)


def read_run(out: Path) -> dict[str, Any]:
    path = out / "run.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise AutoaugError(f"{path}: not valid JSON ({error.msg}); cannot resume from it") from None
