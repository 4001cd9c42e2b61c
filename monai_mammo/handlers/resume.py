"""Resumable training: a full checkpoint written atomically at each validation, and loaded back.

A crash (``kill -9``, a lost node) must cost at most the epochs since the last validation, and a
resumed run must end where the uninterrupted one would have. What has to be saved for that:

* the network, optimiser, lr scheduler and the trainer's own state (epoch, iteration);
* the random streams that drive data shuffling and augmentation (:class:`RandomStates`): torch's
  global CPU generator (a ``DataLoader`` draws its shuffle seed and worker base seed from it when an
  epoch's iterator is created), numpy's and Python's global generators, and the private
  ``RandomState`` of every MONAI ``Randomizable`` transform (``Compose.set_random_state`` seeds
  them once, at the start; each draws from its own stream afterwards);
* the validation's best metric and the key-metric saver's list (:class:`BestMetricState`), so the
  first validation after a resume does not replace the best model by a worse one;
* for a cascade, which stages are done (:class:`monai_mammo.handlers.stage.StageHandler` has a
  ``state_dict``).

:class:`ResumeCheckpointSaver` writes ``{name: obj.state_dict()}`` with
:func:`monai_mammo.atomic_io.atomic_path` (MONAI's ``CheckpointSaver`` writes in place, so a kill
during the write would leave a truncated file in place of the good one). Under
``torch.distributed`` only rank 0 writes. :class:`ResumeCheckpointLoader` loads it when the trainer
starts; a missing, unreadable or mismatching checkpoint is an error naming the file, raised before
the trainer has run an iteration, so nothing is overwritten.

Example (bundle config)::

    resume: false
    train#handlers:
      - {_target_: monai_mammo.handlers.resume.ResumeCheckpointLoader, path: "@resume_file",
         load_dict: "@resume_dict", enabled: "@resume"}
      - ...                               # ValidationHandler first: the checkpoint holds its result
      - {_target_: monai_mammo.handlers.resume.ResumeCheckpointSaver, path: "@resume_file",
         save_dict: "@resume_dict", interval: "@val_interval"}
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.transforms import Randomizable
from monai.utils import min_version, optional_import

from monai_mammo.atomic_io import atomic_path
from monai_mammo.checkpoints import load_checkpoint

Events, _ = optional_import("ignite.engine", "0.4.11", min_version, "Events")
Checkpoint, _ = optional_import("ignite.handlers", "0.4.11", min_version, "Checkpoint")

__all__ = ["RandomStates", "BestMetricState", "ResumeCheckpointSaver", "ResumeCheckpointLoader"]

logger = logging.getLogger(__name__)


def _main_rank() -> bool:
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _randomizables(objects: Iterable[Any]) -> list[Randomizable]:
    """Every ``Randomizable`` in ``objects``, looking inside ``Compose``-like ``.transforms``,
    in a fixed (depth-first) order; each object once."""
    found: list[Randomizable] = []
    seen: set[int] = set()

    def visit(obj: Any) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, Randomizable):
            found.append(obj)
        children = getattr(obj, "transforms", None)
        if isinstance(children, (list, tuple)):
            for child in children:
                visit(child)

    for obj in objects:
        visit(obj)
    return found


def _numpy_state_to_dict(state: tuple) -> dict[str, Any]:
    # numpy's ("MT19937", keys, pos, has_gauss, cached_gaussian) as types torch.load(weights_only=True) accepts
    name, keys, pos, has_gauss, cached = state
    return {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}  # fmt: skip


def _numpy_state_from_dict(d: Mapping[str, Any]) -> tuple:
    keys = np.asarray(d["keys"].numpy(), dtype=np.uint32)
    return (d["name"], keys, int(d["pos"]), int(d["has_gauss"]), float(d["cached_gaussian"]))


class RandomStates:
    """The random streams of a training run as a checkpoint item (``state_dict`` /
    ``load_state_dict``).

    Example::

        >>> import monai
        >>> flip = monai.transforms.RandFlipd(keys="image", prob=0.5)
        >>> chain = monai.transforms.Compose([flip]).set_random_state(seed=0)
        >>> states = RandomStates([chain])
        >>> saved = states.state_dict()
        >>> first = (flip.R.rand(), torch.rand(1).item())
        >>> states.load_state_dict(saved)
        >>> (flip.R.rand(), torch.rand(1).item()) == first
        True

    Under ``torch.distributed`` every rank has its own streams (a rank-dependent seed): the state
    holds every rank's (gathered; ``state_dict`` is then a collective call, made on every rank by
    :class:`ResumeCheckpointSaver`) and each rank loads its own.

    Args:
        transforms: transforms (or ``Compose`` chains) whose ``Randomizable`` members' streams are
            saved; the global torch (CPU, and CUDA when available), numpy and Python generators are
            always saved.
    """

    def __init__(self, transforms: Iterable[Any] = ()) -> None:
        self.transforms = _randomizables(transforms)

    def state_dict(self) -> dict[str, Any]:
        own = self._own_state()
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized()):
            return own
        per_rank: list = [None] * dist.get_world_size()
        dist.all_gather_object(per_rank, own)
        return {"per_rank": per_rank}

    def _own_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy": _numpy_state_to_dict(np.random.get_state()),
            "python": random.getstate(),
            "transforms": [_numpy_state_to_dict(t.R.get_state()) for t in self.transforms],
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "per_rank" in state:
            dist = torch.distributed
            distributed = dist.is_available() and dist.is_initialized()
            world, rank = (dist.get_world_size(), dist.get_rank()) if distributed else (1, 0)
            if len(state["per_rank"]) != world:
                raise ValueError(f"the checkpoint was saved by {len(state['per_rank'])} processes, this run has {world}")
            state = state["per_rank"][rank]
        saved = state["transforms"]
        if len(saved) != len(self.transforms):
            raise ValueError(
                f"the checkpoint holds the random states of {len(saved)} transforms, this run has "
                f"{len(self.transforms)} (the augmentation chain changed)"
            )
        torch.set_rng_state(state["torch"].cpu())
        np.random.set_state(_numpy_state_from_dict(state["numpy"]))
        python = state["python"]
        random.setstate((python[0], tuple(python[1]), python[2]))
        for transform, s in zip(self.transforms, saved):
            transform.R.set_state(_numpy_state_from_dict(s))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class BestMetricState:
    """An evaluator's best key metric (and the key-metric ``CheckpointSaver``'s list of saved
    files) as a checkpoint item, so a resumed run keeps the best model it had.

    Args:
        evaluator: the validation engine (``state.best_metric``, ``state.best_metric_epoch``).
        savers: its ``monai.handlers.CheckpointSaver`` handlers with ``save_key_metric`` (others
            are ignored). Default none.
    """

    def __init__(self, evaluator: Any, savers: Iterable[Any] | None = ()) -> None:
        self.evaluator = evaluator
        self.checkpointers = [c for c in (getattr(s, "_key_metric_checkpoint", None) for s in (savers or ())) if c is not None]

    def state_dict(self) -> dict[str, Any]:
        state = self.evaluator.state
        return {
            "best_metric": float(getattr(state, "best_metric", -1.0)),
            "best_metric_epoch": int(getattr(state, "best_metric_epoch", -1)),
            "saved": [[[float(item.priority), str(item.filename)] for item in c._saved] for c in self.checkpointers],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.evaluator.state.best_metric = float(state["best_metric"])
        self.evaluator.state.best_metric_epoch = int(state["best_metric_epoch"])
        for checkpointer, saved in zip(self.checkpointers, state["saved"]):
            checkpointer.load_state_dict({"_saved": [(priority, filename) for priority, filename in saved]})


class ResumeCheckpointSaver:
    """Write ``{name: obj.state_dict()}`` of ``save_dict`` atomically to ``path`` every
    ``interval`` epochs and when the trainer completes (rank 0 only under ``torch.distributed``).

    Put it after the ``ValidationHandler`` (and after a cascade's ``StageHandler``) in the
    trainer's handlers: handlers of one event run in the order they were attached, and the
    checkpoint must hold what they did.

    Args:
        path: the checkpoint file (replaced at each save; the previous one stays whole until the
            new one is complete).
        save_dict: name -> object with ``state_dict()`` (network, optimiser, scheduler, the trainer,
            :class:`RandomStates`, :class:`BestMetricState`, a ``NetworkSpec``, ...).
        interval: save every ``interval`` epochs (the validation interval). Default 1.
        save_completed: also save at ``Events.COMPLETED``: True when that iteration was not saved
            yet (the last epoch is not a multiple of ``interval``), ``"always"`` also when it was
            (a cascade's ``StageHandler`` ran since: its ``done`` flag must be saved). Default True.
        engine_key: the name of the trainer's own state (epoch, iteration) in the checkpoint: the
            engine the handler is attached to (a config cannot name the trainer inside its own
            handlers without a reference cycle). None: not saved. Default "trainer".
    """

    def __init__(
        self,
        path: str | os.PathLike,
        save_dict: Mapping[str, Any],
        interval: int = 1,
        save_completed: bool | str = True,
        engine_key: str | None = "trainer",
    ) -> None:
        self.path = Path(path)
        self.save_dict = dict(save_dict)
        self.interval = max(int(interval), 1)
        self.save_completed = save_completed if save_completed == "always" else bool(save_completed)
        self.engine_key = engine_key
        self._saved_iteration: int | None = None

    def attach(self, engine: Any) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self)
        if self.save_completed:
            engine.add_event_handler(Events.COMPLETED, self._completed)

    def _completed(self, engine: Any) -> None:
        if self.save_completed == "always" or engine.state.iteration != self._saved_iteration:
            self(engine)

    def __call__(self, engine: Any = None) -> None:
        # every rank builds the state (RandomStates gathers every rank's streams), rank 0 writes it
        state = {name: obj.state_dict() for name, obj in self.save_dict.items()}
        # every rank records the save, so all make the same collective calls at COMPLETED
        self._saved_iteration = getattr(getattr(engine, "state", None), "iteration", None)
        if not _main_rank():
            return
        if self.engine_key is not None and engine is not None:
            state[self.engine_key] = engine.state_dict()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp:
            torch.save(state, tmp)
        epoch = getattr(getattr(engine, "state", None), "epoch", None)
        logger.info("resume checkpoint (epoch %s): %s", epoch, self.path)


class ResumeCheckpointLoader:
    """Load a :class:`ResumeCheckpointSaver` checkpoint into ``load_dict`` when the trainer starts.

    Every rank loads it (the ranks continue from the same state). Ignite's ``Checkpoint.load_objects``
    restores each object; the trainer's ``max_epochs`` of this run is kept, so a resumed run may
    train longer than the interrupted one meant to.

    Args:
        path: the checkpoint file.
        load_dict: name -> object with ``load_state_dict`` (the saver's ``save_dict``).
        enabled: False: do nothing (a fresh run). Default True.
        required: a missing file is an error (True) or a fresh start of this trainer (False:
            an earlier stage's checkpoint carried the run). Default True.
        engine_key: the name the saver gave the trainer's state (``engine_key`` of
            :class:`ResumeCheckpointSaver`); None: not restored. Default "trainer".

    Raises:
        FileNotFoundError: ``required`` and ``path`` does not exist.
        ValueError: ``path`` is not a readable checkpoint, lacks an item of ``load_dict``, or does
            not fit it (another network: the differing constructor arguments are named).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        load_dict: Mapping[str, Any],
        enabled: bool | str = True,
        required: bool = True,
        engine_key: str | None = "trainer",
    ) -> None:
        self.path = Path(path)
        self.load_dict = dict(load_dict)
        # "--resume true" on the command line may arrive as the string "true"
        self.enabled = enabled.strip().lower() in ("true", "1", "yes") if isinstance(enabled, str) else bool(enabled)
        self.required = bool(required)
        self.engine_key = engine_key

    def attach(self, engine: Any) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Any) -> None:
        if not self.enabled:
            return
        if not self.path.is_file():
            if self.required:
                raise FileNotFoundError(f"{self.path}: no checkpoint to resume from (train without --resume true first)")
            logger.info("resume: %s not written yet, this trainer starts from the beginning", self.path)
            return
        checkpoint = load_checkpoint(self.path)
        wanted = set(self.load_dict) | ({self.engine_key} if self.engine_key else set())
        missing = sorted(wanted - set(checkpoint) if isinstance(checkpoint, Mapping) else wanted)
        if missing:
            raise ValueError(f"{self.path}: not a resume checkpoint of this run (missing {', '.join(missing)})")
        max_epochs = engine.state.max_epochs
        # the network's constructor arguments first: a changed network gets a message naming them
        ordered = sorted(self.load_dict, key=lambda name: name != "network_spec")
        try:
            Checkpoint.load_objects(to_load={k: self.load_dict[k] for k in ordered}, checkpoint=dict(checkpoint), strict=True)
            if self.engine_key:
                engine.load_state_dict(checkpoint[self.engine_key])
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{self.path}: does not fit this run: {exc}") from exc
        if max_epochs is not None:
            engine.state.max_epochs = max(int(max_epochs), int(engine.state.epoch))
        logger.info("resumed from %s at epoch %d, iteration %d", self.path, engine.state.epoch, engine.state.iteration)
