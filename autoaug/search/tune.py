"""Running a search with Ray Tune: the only module that imports ray.

The driver loads the data once and puts it in Ray's object store; each trial decodes its config into a
Policy, trains on the training part and reports validation accuracy per epoch.  A driver-side callback
writes every result to ``trials.parquet`` as it arrives, so a crash loses nothing that finished.
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import re
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.logger import TBXLoggerCallback
from ray.tune.search.nevergrad import NevergradSearch
from ray.tune.stopper import Stopper

from autoaug.datasets import ArrayData
from autoaug.errors import AutoaugError
from autoaug.policy import Policy, load_policy
from autoaug.results import TrialRecord, library_versions
from autoaug.search.options import (TRIAL_FRACTION, Budget, SearchOptions, parse_budget, prepare, read_run,
                                    resolve_batch_size, resolve_gpus_per_trial, retrain_seeds, search_data,
                                    train_config, trial_seed)
from autoaug.search.compare import (Comparison, collect_retraining, contender_label, contenders, final_ranking,
                                    rank_retrained)
from autoaug.search.outcome import (Candidate, Progress, SearchInterrupted, SearchOutcome, candidate_table,
                                    check_extension, config_columns, now, policy_for, rank_candidates,
                                    trial_configs, update_run, write_top)
from autoaug.search.seeds import Seed, same_point, seeds_for
from autoaug.search.space import Domain, SearchSpace, load_space
from autoaug.search.synthetic import SYNTHETIC, synthetic_scores
from autoaug.trainer import EpochMetrics, TrainConfig, Trainer, learning_rate_record, train

METRIC = "val_accuracy"
_METRIC_COLUMNS = ("epoch", METRIC, "train_loss", "val_loss", "val_ece", "images_per_second", "epoch_seconds",
                   "node_id", "time_total_s", "reported_at")
_FINISHED = (Trial.TERMINATED, Trial.ERROR)
_REPROPOSALS = 20  # asks per trial before a repeated point is run anyway
_NUMBER = re.compile(r"_n(\d+)$")  # a trial name's proposal number (see _trial_name)
# The running search's progress hook.  Ray pickles callbacks into the experiment state (a live display
# cannot be pickled), and a restored search gets its callbacks back from there, so the hook lives here.
_LIVE: dict[str, Callable[[Progress], None] | None] = {"hook": None}


class TrialFailed(RuntimeError):
    """A trial ended with NaN or out of memory: Ray records it as an errored trial with this reason."""


@dataclass(frozen=True)
class _Settings:
    """What every trial needs besides its config and the data; shipped once with the trainable."""

    space: SearchSpace
    train_config: TrainConfig  # its seed is the search's: a trial trains with its own (see _trial_config)
    cpus: int
    synthetic: bool = False


def _trial_name(trial: Trial) -> str:
    """Ray's name for the trial plus ``_n`` and its proposal number: the searcher's count of the trials
    it proposed (the number its experiment tag starts with), which a resumed search carries on."""
    number = int(re.match(r"\d+", trial.experiment_tag).group())
    return f"{trial.trainable_name}_{trial.trial_id}_n{number}"


def seed_for_trial(trial_name: str | None, search_seed: int) -> int:
    """The seed a trial trains with: ``trial_seed`` of its proposal number; the search's own seed for a
    trainable called outside Tune (no name) or a name without a number."""
    match = _NUMBER.search(trial_name or "")
    return search_seed if match is None else trial_seed(search_seed, int(match.group(1)))


def _trial_config(settings: _Settings) -> TrainConfig:
    """The search's training config with this trial's own seed: its initial weights, batch order and
    augmentation draws are its own, and the same on a rerun of the search."""
    base = settings.train_config
    return replace(base, seed=seed_for_trial(tune.get_context().get_trial_name(), base.seed))


def _tune_domain(domain: Domain) -> Any:
    if domain.kind == "uniform":
        return tune.uniform(domain.low, domain.high)
    if domain.kind == "loguniform":
        return tune.loguniform(domain.low, domain.high)
    if domain.kind == "int":
        return tune.randint(int(domain.low), int(domain.high) + 1)
    return tune.choice(list(domain.choices))


def _pbt_mutations(domains: dict[str, Domain]) -> dict[str, Any]:
    """PBT's explore step: a choice shifts to a neighbouring choice (a list), a range is scaled (a domain)."""
    return {k: list(d.choices) if d.kind == "choice" else _tune_domain(d) for k, d in domains.items()}


def _clip_to(domains: dict[str, Domain], config: dict[str, Any]) -> dict[str, Any]:
    """PBT scales a value by 0.8 or 1.2, which can leave its range (a probability of 1.1): clip it back."""
    return {**config, **{k: d.clip(config[k]) for k, d in domains.items() if k in config}}


def _report(metrics: EpochMetrics, **extra: Any) -> dict[str, Any]:
    return {METRIC: metrics.val_accuracy, "train_loss": metrics.train_loss, "val_loss": metrics.val_loss,
            "val_ece": metrics.val_ece, "images_per_second": metrics.images_per_second, "epoch": metrics.epoch,
            "epoch_seconds": metrics.seconds, "node_id": ray.get_runtime_context().get_node_id(),
            "reported_at": time.time(), **extra}


def _trial(config: dict[str, Any], data: tuple[ArrayData, ArrayData] | None = None,
           settings: _Settings | None = None) -> None:
    """One trial: decode, train, report every epoch; NaN and OOM become trial errors with their reason."""
    torch.set_num_threads(settings.cpus)
    policy = settings.space.decode(config)
    result = train(policy, *data, _trial_config(settings), on_epoch=lambda m: tune.report(_report(m)))
    if result.status in ("nan", "oom"):
        raise TrialFailed(f"{result.status}: {result.message}")


def _synthetic_trial(config: dict[str, Any], data: tuple[ArrayData, ArrayData] | None = None,
                     settings: _Settings | None = None) -> None:
    """The ``synthetic`` model: a score per epoch from the point itself, reported like a trained one's."""
    start = time.monotonic()
    trial = _trial_config(settings)
    scores = synthetic_scores(settings.space.parameters(), config, epochs=trial.epochs, seed=trial.seed)
    for epoch, score in scores:
        seconds = time.monotonic() - start
        tune.report(_report(EpochMetrics(epoch, 1.0 - score, score, 1.0 - score, 0.0, 0.0, seconds)))
        start = time.monotonic()


def _pbt_trial(config: dict[str, Any], data: tuple[ArrayData, ArrayData] | None = None,
               settings: _Settings | None = None) -> None:
    """PBA-style: PBT may swap in a new config between epochs; the checkpoint carries the policy history."""
    torch.set_num_threads(settings.cpus)
    policy = settings.space.decode(config)
    trainer, history = Trainer(policy, *data, _trial_config(settings)), []
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # resumed, or cloned from a better trial (exploit) with a perturbed config
        with checkpoint.as_directory() as folder:
            state = torch.load(Path(folder) / "state.pt", weights_only=False)
        trainer.load_state_dict(state)
        trainer.set_policy(policy)
        history = state["history"]
    while trainer.epochs_done < settings.train_config.epochs:
        history = history + [(trainer.epochs_done, dict(config))]
        try:
            metrics = trainer.run_epoch()
        except FloatingPointError as error:
            raise TrialFailed(f"nan: {error}") from None
        except torch.OutOfMemoryError as error:
            raise TrialFailed(f"oom: out of device memory: {str(error).splitlines()[0]}") from None
        with tempfile.TemporaryDirectory() as folder:
            torch.save({**trainer.state_dict(), "history": history}, Path(folder) / "state.pt")
            tune.report(_report(metrics, history=history), checkpoint=tune.Checkpoint.from_directory(folder))


class Deadline(tune.Callback, Stopper):
    """A time budget timed from the first trial's start, so that it is the search's own time.

    Tune's ``time_budget_s`` starts with ``fit``, before any trial actor is up; starting the actors
    (a process each, importing torch) takes 10-20 s on a loaded CPU machine, which a budget of
    seconds would spend without running a trial.  Passed both as a callback (to see the first trial
    start) and as the run's stopper.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.since: float | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"seconds": self.seconds}  # a monotonic time means nothing in another process

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["seconds"])

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if self.since is None:
            self.since = time.monotonic()

    def remaining(self) -> float:
        """Seconds left: all of them until the first trial starts."""
        if self.since is None:
            return self.seconds
        return max(0.0, self.seconds - (time.monotonic() - self.since))

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False  # no single trial is stopped: stop_all ends them all at the deadline

    def stop_all(self) -> bool:
        return self.remaining() <= 0.0


class Recorder(tune.Callback):
    """Each result and trial end, appended to the search's ``TrialRecord`` as it happens; live progress.

    ``seed`` is the search's: each row records the seed its trial trained with (``seed_for_trial``).
    """

    def __init__(self, out: Path, epochs: int, budget: Budget, deadline: Deadline | None = None, *,
                 seed: int) -> None:
        self.out, self.epochs, self.budget, self.deadline, self.seed = out, epochs, budget, deadline, seed
        self._open()

    def _open(self) -> None:
        self.record = TrialRecord(self.out)
        self.restored = bool(self.record.rows)  # rows of an interrupted run: check them against Tune's trials
        self.start = time.monotonic()

    def __getstate__(self) -> dict[str, Any]:
        return {"out": self.out, "epochs": self.epochs, "budget": self.budget, "deadline": self.deadline,
                "seed": self.seed}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._open()

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        """After a restore, unfinished trials run again: their rows after the checkpoint (if any) go.
        Trials the record holds as finished keep their rows, whatever Tune's older snapshot says."""
        if not self.restored:
            return
        self.restored = False
        for trial in trials:
            if not self.record.is_final(trial.trial_id) and trial.status not in _FINISHED:
                self.record.restart(trial.trial_id, _epochs_kept(trial))

    def _row(self, trial: Any, result: dict | None = None) -> dict:
        metrics = {k: v for k, v in (result or {}).items() if k in _METRIC_COLUMNS}
        if result and "history" in result:  # PBT: the config each epoch trained with
            metrics["history"] = json.dumps(result["history"])
        return {"trial_id": trial.trial_id, "seed": seed_for_trial(str(trial), self.seed), **metrics,
                **config_columns(trial.config)}

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.record.report(self._row(trial, result))
        self._progress()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.finish(trial)
        self._progress()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.record.finish(trial.trial_id, "failed", error=_error_reason(trial), base=self._row(trial))
        self._progress()

    def finish(self, trial: Any) -> None:
        """A trial that ended without error: completed if it trained every epoch, else stopped early."""
        full = self.record.last_epoch.get(trial.trial_id, 0) >= self.epochs
        self.record.finish(trial.trial_id, "completed" if full else "stopped_early", base=self._row(trial))

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.record.compact()

    def _progress(self) -> None:
        _send(self.progress())

    def progress(self) -> Progress:
        """Counts from the record, O(1) per event (running: trials that reported and have not ended)."""
        counts = self.record.counts
        done, failed = counts["completed"] + counts["stopped_early"], counts["failed"]
        elapsed, finished, total = time.monotonic() - self.start, done + failed, self.budget.trials
        if self.deadline is not None:
            remaining = self.deadline.remaining()
        else:
            remaining = elapsed / finished * (total - finished) if finished and total is not None else None
        best_trial, best_epoch = self.record.best_at or (None, None)
        return Progress(done=done, running=counts["running"], failed=failed, total=total, best=self.record.best,
                        elapsed=elapsed, remaining=remaining, best_trial=best_trial, best_epoch=best_epoch)


def _send(progress: Progress) -> None:
    hook = _LIVE["hook"]
    if hook is not None:
        hook(progress)


def settle(out: Path, trials: list, recorder: Recorder) -> TrialRecord:
    """After a search that was not interrupted, give every trial a final status in the record; returns it.

    Trials cut at a time budget's deadline end without Tune calling back (stopped early), and trials
    that a resumed search's older snapshot had lost never end (failed, with the reason).
    """
    record = recorder.record
    for trial in trials:
        if record.is_final(trial.trial_id):
            continue
        if trial.status == Trial.ERROR:
            record.finish(trial.trial_id, "failed", error=_error_reason(trial), base=recorder._row(trial))
        else:
            recorder.finish(trial)
    known = {trial.trial_id for trial in trials}
    for trial_id in [t for t, status in record.status.items() if status == "running" and t not in known]:
        record.finish(trial_id, "failed", error="the search was killed while this trial ran, and the resumed "
                                                "search did not run it again")
    record.compact()
    return record


def _epochs_kept(trial: Any) -> float:
    """Epochs of a restored trial that stand: all if it finished, up to its checkpoint if it resumes (PBT),
    none if it starts again."""
    if trial.status in _FINISHED:
        return float("inf")
    return (trial.last_result or {}).get("epoch", 0) if trial.checkpoint is not None else 0


def _error_reason(trial: Any) -> str:
    """The last line of the trial's traceback, e.g. ``TrialFailed: nan: training loss became nan``."""
    try:
        lines = Path(trial.error_file).read_text().strip().splitlines()
    except (OSError, TypeError):
        return "the trial raised an error"
    line = next((line.strip() for line in reversed(lines) if line.strip()), "the trial raised an error")
    return line.removeprefix("autoaug.search.tune.")[:500]


@contextlib.contextmanager
def _quiet_ray() -> Iterator[None]:
    """Tune logs every failed trial's traceback at ERROR; the Parquet rows hold the reasons instead."""
    loggers = [logging.getLogger(name) for name in ("ray", "ray.tune", "ray.train")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _start_ray(options: SearchOptions) -> None:
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the old reporter honours verbose=0: no trial tables
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # our Parquet rows replace its CSV/JSON
    kwargs: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
    if options.address:
        address = _check_reachable(options.address)
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise AutoaugError(f"cannot join the Ray cluster at {options.address}: "
                               f"{(str(error).strip().splitlines() or [type(error).__name__])[0]}") from None
    else:
        # "local": a new instance of our own, even where `ray start` left a cluster running on this machine
        ray.init(address="local", include_dashboard=False, num_cpus=os.cpu_count(), **kwargs)


def _check_reachable(address: str) -> str:
    """The address to join; one that nothing answers on is one line within seconds (Ray's client
    retries for 30 s and logs each try)."""
    given = address
    if address == "auto":  # what `ray start` left on this machine; not Ray's scan for any running instance,
        from ray._private.utils import read_ray_address  # which finds other programs' private ones

        address = os.environ.get("RAY_ADDRESS") or read_ray_address(None) or ""
        if not address:
            raise AutoaugError("--address auto: no Ray cluster was started on this machine (ray start --head) "
                               "and RAY_ADDRESS is not set")
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise AutoaugError(f"--address must be host:port, ray://host:port or auto, got {given!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=3).close()
    except OSError as error:
        raise AutoaugError(f"no Ray cluster answers at {address} ({error.strerror or error}); start one with "
                           "`ray start --head` and pass the address it prints, or leave out --address to run "
                           "on this machine") from None
    return address


@contextlib.contextmanager
def _sigterm_stops_search() -> Iterator[None]:
    """SIGTERM ends a search as Ctrl-C does: Tune saves its state and stops the trials, so --resume goes on.

    Ray's workers run in process groups of their own, so killing the driver's group leaves them to be
    reaped by Ray; a signal to the driver alone stops everything cleanly.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: signal.raise_signal(signal.SIGINT))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass(frozen=True)
class _Resources:
    cpus: int
    gpus: float
    concurrency: int


def _resources(options: SearchOptions) -> _Resources:
    cluster = ray.cluster_resources()
    gpus = resolve_gpus_per_trial(options.gpus_per_trial, device=options.device, cluster_gpus=cluster.get("GPU", 0),
                                  local_gpus=torch.cuda.device_count(), joined_cluster=options.address is not None)
    cpus = cluster.get("CPU", 1)
    if options.cpus_per_trial > cpus:
        raise AutoaugError(f"cpus_per_trial {options.cpus_per_trial} is more than the {cpus:g} CPUs of the cluster")
    concurrency = int(cpus // options.cpus_per_trial)
    if gpus > 0:
        concurrency = min(concurrency, int(cluster["GPU"] // gpus))
    return _Resources(options.cpus_per_trial, gpus, max(1, concurrency))


class _FullLengthNevergrad(NevergradSearch):
    """NevergradSearch told only results of trials that trained all ``full_epochs``.

    A trial ASHA stopped early scored at fewer epochs, where weak augmentation looks better than it
    is; telling Nevergrad that score would steer it towards weak policies.
    """

    def __init__(self, *args: Any, full_epochs: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.full_epochs = full_epochs
        self.proposed: dict[str, dict] = {}
        self.scored: list[tuple[dict, float]] = []  # full-length points and their scores

    def suggest(self, trial_id: str) -> dict | None:
        """A point not scored before: a repeat (a mutation that changed nothing) is told its known score."""
        config = super().suggest(trial_id)
        for _ in range(_REPROPOSALS):
            score = next((s for point, s in self.scored if same_point(point, config)), None)
            if score is None:
                break
            self._nevergrad_opt.tell(self._live_trial_mapping[trial_id], self._metric_op * score)
            config = super().suggest(trial_id)
        self.proposed[trial_id] = config
        return config

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        config = self.proposed.pop(trial_id, None)
        if result and not error and result.get("epoch") == self.full_epochs:
            self._process_result(trial_id, result)
            if config is not None:
                self.scored.append((config, result[self._metric]))
        self._live_trial_mapping.pop(trial_id, None)


def _nevergrad(space: SearchSpace, options: SearchOptions, budget: Budget, concurrency: int,
               seeds: list[Seed]) -> Any:
    """NGOpt over our own, seeded parametrisation, so the same seed proposes the same trials.

    The seeds (shipped policies the space can express) are its first proposals: ordinary trials.
    """
    import nevergrad as ng
    from ray.tune.search import ConcurrencyLimiter

    def parameter(domain: Domain) -> Any:
        if domain.kind == "choice":
            return ng.p.Choice(list(domain.choices))
        if domain.kind == "loguniform":
            return ng.p.Log(lower=domain.low, upper=domain.high)
        scalar = ng.p.Scalar(lower=domain.low, upper=domain.high)
        return scalar.set_integer_casting() if domain.kind == "int" else scalar

    parametrization = ng.p.Dict(**{key: parameter(d) for key, d in space.parameters().items()})
    parametrization.random_state = np.random.RandomState(options.seed)
    # NGOpt picks its method from the budget, the workers and the parameter types (mixed here)
    optimizer = ng.optimizers.NGOpt(parametrization=parametrization, budget=budget.trials or 1000,
                                    num_workers=concurrency)
    searcher = _FullLengthNevergrad(optimizer=optimizer, metric=METRIC, mode="max", full_epochs=options.epochs,
                                    points_to_evaluate=[seed.point for seed in seeds] or None)
    return ConcurrencyLimiter(searcher, max_concurrent=concurrency)


def grace_period(epochs: int) -> int:
    """ASHA's first rung: half a trial, so that the early ranking already resembles the final one."""
    return max(1, math.ceil(TRIAL_FRACTION * epochs))


def _scheduler(options: SearchOptions, space: SearchSpace) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining

    if options.algo == "pbt":
        # a model's widths cannot change mid-run, so width/resolution parameters stay as first drawn
        evolving = {k: d for k, d in space.parameters().items() if not k.startswith("width_resolution")}
        if not evolving:
            raise AutoaugError(f"pbt evolves policy parameters, and space {space.name} has none that may change "
                               "during training; use --algo nevergrad or random")
        return PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=max(1, options.epochs // 4),
                                       hyperparam_mutations=_pbt_mutations(evolving), quantile_fraction=0.25,
                                       synch=False, custom_explore_fn=functools.partial(_clip_to, evolving))
    if options.scheduler == "asha":
        return ASHAScheduler(time_attr="training_iteration", max_t=options.epochs,
                             grace_period=grace_period(options.epochs), reduction_factor=3)
    return FIFOScheduler()


def _tuner(options: SearchOptions, space: SearchSpace, trainable: Any, recorder: Recorder, out: Path,
           resources: _Resources, seeds: list[Seed]) -> tune.Tuner:
    budget, deadline = parse_budget(options.budget), recorder.deadline
    domains = {k: _tune_domain(d) for k, d in space.parameters().items()}
    if options.algo == "nevergrad":
        searcher, param_space = _nevergrad(space, options, budget, resources.concurrency, seeds), {}
    else:
        points = [seed.point for seed in seeds] if options.algo == "random" else None
        searcher = tune.search.BasicVariantGenerator(random_state=options.seed, points_to_evaluate=points)
        param_space = domains
    tune_config = tune.TuneConfig(
        metric=METRIC, mode="max", num_samples=budget.trials or -1,
        search_alg=searcher, scheduler=_scheduler(options, space), max_concurrent_trials=resources.concurrency,
        trial_name_creator=_trial_name,  # the number in the name gives the trial its seed
        reuse_actors=True)  # a new actor per trial would import torch again: seconds per trial on a CPU
    run_config = tune.RunConfig(
        name="tune", storage_path=str(out), verbose=0, stop=deadline,
        callbacks=[recorder, *([deadline] if deadline else []), *_loggers(options, out)],
        failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=3) if options.algo == "pbt" else None)
    return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)


class _TensorBoardLogger(TBXLoggerCallback):
    """Ray's TensorBoard logger, with every trial's parameters in TensorBoard's HParams tab.

    Ray writes hparams from ``trial.evaluated_params`` only, which trials given as ``points_to_evaluate``
    (the seeds, under the random searcher) leave empty; their config holds the same parameters.
    """

    def log_trial_end(self, trial: Trial, failed: bool = False) -> None:
        if trial in self._trial_writer and not trial.evaluated_params and self._trial_result[trial]:
            self._config_hparams(trial)
        super().log_trial_end(trial, failed)

    def _config_hparams(self, trial: Trial) -> None:
        from ray.tune.utils import flatten_dict
        from tensorboardX.summary import hparams

        plain = lambda v: v.item() if isinstance(v, np.generic) else v  # noqa: E731  (numpy scalars: not in protos)
        params = {k: plain(v) for k, v in flatten_dict(trial.config, delimiter="/").items()}
        metrics = {k: plain(v) for k, v in self._trial_result[trial].items()}  # already flat, "ray/tune/..." keys
        summaries = hparams(hparam_dict={k: v for k, v in params.items() if isinstance(v, (str, bool, int, float))},
                            metric_dict={k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        for summary in summaries:
            self._trial_writer[trial].file_writer.add_summary(summary)


def _loggers(options: SearchOptions, out: Path) -> list[Any]:
    """Ray Tune's own logger callbacks for ``--log``: TensorBoard files in each trial's folder, MLflow runs."""
    callbacks: list[Any] = []
    if "tensorboard" in options.log:
        callbacks.append(_TensorBoardLogger())
    if "mlflow" in options.log:  # MLFLOW_TRACKING_URI where set (a team's server), else a local store in the run
        from ray.air.integrations.mlflow import MLflowLoggerCallback
        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{out / 'mlflow.db'}"  # mlflow 3 retired ./mlruns
        callbacks.append(MLflowLoggerCallback(tracking_uri=uri, experiment_name=f"autoaug-{out.name}"))
    return callbacks


def _let_trials_start_together(concurrency: int) -> None:
    """Let Tune ask for as many trial actors at once as trials may run at once.

    Before Ray 2.57 Tune kept one trial pending at a time for any searcher but its own, whatever
    ``max_concurrent_trials`` said, so the second actor was asked for only once the first ran; with
    reused actors and short trials, the first actor then ran every trial (one node of a cluster, one
    slot of a GPU). Its environment setting lifts that; a value the user set is kept.
    """
    os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", str(max(1, concurrency)))


def run_search(options: SearchOptions, *, on_progress: Callable[[Progress], None] | None = None) -> SearchOutcome:
    """Search ``options.space`` on ``options.dataset``; writes everything under ``options.out``.

    Raises SearchInterrupted when stopped (Ctrl-C) before the budget is spent; ``resume=True`` continues
    it, and with a larger trial budget extends a finished search.
    """
    options = prepare(options)
    if options.address:  # before the data loads: a wrong address is one line within seconds
        _check_reachable(options.address)
    out, space = Path(options.out), load_space(options.space)
    config = train_config(options, space)  # a model unfit for the space is an error before the data loads
    previous = read_run(out) if options.resume else {}
    if options.resume:
        check_extension(out, options, previous)
    data = search_data(options)
    options = resolve_batch_size(options, data[0])
    settings = _Settings(space, replace(config, batch_size=options.batch_size), options.cpus_per_trial,
                         synthetic=options.model == SYNTHETIC)
    if settings.synthetic and options.algo == "pbt":
        raise AutoaugError("the synthetic model has no training to perturb; use it with --algo nevergrad or random")
    seeds = seeds_for(space, options.dataset) if options.algo != "pbt" else []
    _start_ray(options)
    resources = _resources(options)
    update_run(out, state="running", options=options.to_dict(), versions=_versions(),
               learning_rate=learning_rate_record(config, options.batch_size),
               resources=resources.__dict__, started=previous.get("started", now()),
               seeds={seed.name: seed.point for seed in seeds},
               resumed=previous.get("resumed", []) + ([now()] if options.resume else []))
    function = _pbt_trial if options.algo == "pbt" else _synthetic_trial if settings.synthetic else _trial
    trainable = tune.with_resources(tune.with_parameters(function, data=data, settings=settings),
                                    {"cpu": resources.cpus, "gpu": resources.gpus})
    budget = parse_budget(options.budget)
    _LIVE["hook"] = on_progress
    _let_trials_start_together(resources.concurrency)
    try:
        with _quiet_ray(), _sigterm_stops_search():
            if options.resume:
                _extend_budget(out / "tune", budget)
                tuner = tune.Tuner.restore(str(out / "tune"), trainable=trainable, resume_errored=False,
                                           restart_errored=False)
            else:
                _send(Progress(done=0, total=budget.trials))  # said before Ray's workers take seconds to start
                deadline = Deadline(budget.seconds) if budget.seconds is not None else None
                recorder = Recorder(out, options.epochs, budget, deadline, seed=options.seed)
                tuner = _tuner(options, space, trainable, recorder, out, resources, seeds)
            grid = tuner.fit()
        _check_interrupted(grid, budget, out)
        recorder = Recorder(out, options.epochs, budget, seed=options.seed)
        record = settle(out, grid._experiment_analysis.trials, recorder)
        return _finish(options, settings, record, data, resources, out, seeds)
    finally:
        _LIVE["hook"] = None


def _extend_budget(tune_dir: Path, budget: Budget) -> None:
    """Set the restored experiment's number of trials: Tune keeps it in its search-algorithm state.

    The restored optimizer keeps everything it was told, so an extension starts from the trials
    already run (the ones in trials.parquet), not from scratch.
    """
    import ray.cloudpickle as cloudpickle

    states = sorted(tune_dir.glob("search_gen_state-*.json"), key=lambda path: path.stat().st_mtime)
    if budget.trials is None or not states:
        return
    state = cloudpickle.loads(states[-1].read_bytes())
    if state.get("total_samples") == budget.trials:
        return
    state["total_samples"], state["finished"] = budget.trials, False
    tmp = states[-1].with_name(f".{states[-1].name}.tmp")
    tmp.write_bytes(cloudpickle.dumps(state))
    os.replace(tmp, states[-1])


def _check_interrupted(grid: Any, budget: Budget, out: Path) -> None:
    """Tune returns normally after Ctrl-C; unfinished trials (or too few) tell an interrupted search."""
    finished = grid.num_terminated + grid.num_errors
    if finished < len(grid) or (budget.trials is not None and finished < budget.trials):
        update_run(out, state="interrupted", finished_trials=finished)
        raise SearchInterrupted(f"search interrupted after {finished} of {budget} finished; continue it with "
                                f"autoaug search --resume --out {out}")


def _retrain(policy: Policy, config: dict[str, Any], seed: int, data: tuple[ArrayData, ArrayData],
             settings: _Settings, epochs: int) -> float:
    """One head-to-head run of a contender with one seed; NaN when it fails."""
    if settings.synthetic:
        return list(synthetic_scores(settings.space.parameters(), config, epochs=epochs, seed=seed))[-1][1]
    torch.set_num_threads(settings.cpus)
    train_config = replace(settings.train_config, seed=seed, epochs=epochs)
    result = train(policy, *data, train_config)
    return result.val_accuracy if result.status == "ok" else float("nan")


def _retrain_all(policies: list[tuple[Policy, dict[str, Any]]], labels: tuple[str, ...], seeds: tuple[int, ...],
                 epochs: int, data: tuple[ArrayData, ArrayData], settings: _Settings,
                 resources: _Resources) -> list[tuple[float, ...]]:
    """Every policy with every seed, as Ray tasks; progress as the re-training starts and after each run."""
    remote = ray.remote(num_cpus=resources.cpus, num_gpus=resources.gpus)(_retrain)
    data_ref = ray.put(data)
    jobs = {remote.remote(policy, config, seed, data_ref, settings, epochs): (i, j)
            for i, (policy, config) in enumerate(policies) for j, seed in enumerate(seeds)}
    return collect_retraining(labels, len(seeds), resources.concurrency, _as_they_finish(jobs), _send)


def _as_they_finish(jobs: dict[Any, tuple[int, int]]) -> Iterator[tuple[int, int, float]]:
    """(contender, seed, score) of each run as it ends; NaN where its task raised."""
    pending = list(jobs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        i, j = jobs[ready[0]]
        try:
            score = float(ray.get(ready[0]))
        except ray.exceptions.RayTaskError:
            score = math.nan
        yield i, j, score


def _head_to_head(candidates: list[Candidate], options: SearchOptions, data: tuple[ArrayData, ArrayData],
                  settings: _Settings, resources: _Resources) -> Comparison | None:
    """The top-k candidates and the best seed, re-trained with the same seeds, epochs and split.

    None where there is nothing to compare: top_k 0, PBT (its results are schedules), one contender.
    """
    proposed, baseline = contenders(candidates, options.top_k)
    entries = proposed + ([baseline] if baseline else [])
    if options.algo == "pbt" or options.top_k == 0 or len(entries) < 2:
        return None
    policies = [(load_policy(c.seed_policy) if c.seed_policy else settings.space.decode(c.config), c.config)
                for c in entries]
    seeds = retrain_seeds(options.seed, options.top_k_seeds)
    labels = tuple(contender_label(c) for c in entries)
    scores = _retrain_all(policies, labels, seeds, options.retrain_epochs, data, settings, resources)
    rescored = [replace(c, retrain_scores=s) for c, s in zip(entries, scores)]
    return Comparison(rank_retrained(rescored[:len(proposed)]), rescored[-1] if baseline else None, seeds,
                      options.retrain_epochs)


def _finish(options: SearchOptions, settings: _Settings, record: TrialRecord, data: tuple[ArrayData, ArrayData],
            resources: _Resources, out: Path, seeds: list[Seed]) -> SearchOutcome:
    rows = record.table()  # the record: trials a resumed search's Tune snapshot lost are in it too
    # every trial settled: completed + stopped_early + failed add up to trials, a failed search's too
    counts = {"trials": len(record.status), **{k: record.counts[k] for k in ("completed", "stopped_early", "failed")}}
    candidates = rank_candidates(rows, trial_configs(rows, settings.space), options.epochs, tuple(seeds))
    if not candidates:
        update_run(out, state="failed", **counts)
        raise AutoaugError(f"no trial finished all {options.epochs} epochs ({counts['failed']} of {counts['trials']} "
                           f"failed); see {out / 'trials.parquet'}")
    comparison = _head_to_head(candidates, options, data, settings, resources)
    ranked = final_ranking(candidates, comparison)
    top = ranked[: max(1, options.top_k)]
    verdict = comparison.verdict() if comparison else None
    policies = [policy_for(options, settings.space, c, rows, rank=rank, versions=_versions(),
                           verdict=verdict if rank == 1 else None) for rank, c in enumerate(top, 1)]
    top_paths = write_top(out, policies)
    update_run(out, state="finished", finished=now(), chosen_trial=top[0].trial_id,
               candidates=candidate_table(top), chosen_seed_policy=top[0].seed_policy,
               head_to_head=comparison.record() if comparison else None,
               rank_correlation=comparison.rank_correlation if comparison else None, **counts)
    return SearchOutcome(policies[0], top[0].score, top[0].trial_id, counts["trials"], counts["completed"],
                         counts["stopped_early"], counts["failed"], out, out / "policy.json", out / "trials.parquet",
                         out / "run.json", top_paths, comparison)


def _versions() -> dict[str, str]:
    return {**library_versions(), "ray": ray.__version__, "nevergrad": version("nevergrad")}
