"""Cascades: a stage that runs when a trainer completes.

A cascade trains a second model on what the first one produces (ASN: the false-positive-reduction
classifier on the candidates of the trained ASN). In a bundle config:

* :class:`StageHandler` is one of the first trainer's ``train_handlers``; at ``Events.COMPLETED``
  it runs the stage (any callable), so one run id trains every stage and MONAI Label's ``run``
  does too. Under ``torch.distributed`` the stage runs on rank 0 while the other ranks wait at a
  barrier (the handler must then be on every rank).
* :class:`TrainingStage` is such a stage: it builds its data, data loader, network, optimiser,
  scheduler and trainer **when it runs** (from MONAI config ``_mode_: callable`` partials), so
  nothing is built from placeholder data when the config is parsed, and the random number
  streams are drawn in the same order as when the stage was sequenced after the first trainer.

Example (bundle config)::

    stage:
      _target_: monai_mammo.handlers.stage.TrainingStage
      data: {_target_: my_module.mine_samples, _mode_: callable, ...}
      dataloader: {_target_: monai.data.DataLoader, _mode_: callable, batch_size: 32}
      network: {_target_: my_module.Classifier, _mode_: callable}
      optimizer: {_target_: torch.optim.Adam, _mode_: callable, lr: 0.001}
      trainer: {_target_: monai.engines.SupervisedTrainer, _mode_: callable, max_epochs: 3, ...}
      save: {_target_: monai_mammo.checkpoints.save_network, _mode_: callable, path: "models/clf.pt"}
    train#handlers:
      - {_target_: monai_mammo.handlers.stage.StageHandler, stage: "@stage", name: classifier}
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.utils import min_version, optional_import

Events, _ = optional_import("ignite.engine", "0.4.11", min_version, "Events")

__all__ = ["StageHandler", "TrainingStage"]

logger = logging.getLogger(__name__)


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


class StageHandler:
    """Run ``stage()`` once when the engine it is attached to completes.

    Example::

        >>> from ignite.engine import Engine
        >>> ran = []
        >>> engine = Engine(lambda engine, batch: None)
        >>> StageHandler(lambda: ran.append("stage 2"), name="stage 2").attach(engine)
        >>> _ = engine.run([0, 1], max_epochs=2)
        >>> ran
        ['stage 2']

    Args:
        stage: a callable without arguments (e.g. a :class:`TrainingStage`).
        enabled: False (or the text "false", as a command line gives it) skips the stage (logged). Default True.
        name: the stage's name in the log. Default "stage".
        event: the Ignite event. Default ``"COMPLETED"`` (after the last epoch, also when the
            engine was terminated early).
        main_rank_only: under ``torch.distributed``, run on rank 0 and make the other ranks wait
            at a barrier until it is done. Default True.
    """

    def __init__(
        self,
        stage: Callable[[], Any],
        enabled: bool | str = True,
        name: str = "stage",
        event: str = "COMPLETED",
        main_rank_only: bool = True,
    ) -> None:
        if not callable(stage):
            raise TypeError(f"StageHandler {name!r}: stage must be callable, got {type(stage).__name__}")
        self.stage = stage
        # "--stage#enabled false" on the command line may arrive as the string "false"
        self.enabled = enabled.strip().lower() in ("true", "1", "yes") if isinstance(enabled, str) else bool(enabled)
        self.name = name
        self.event = getattr(Events, event)
        self.main_rank_only = bool(main_rank_only)
        self.result: Any = None
        self.done = False

    def state_dict(self) -> dict[str, bool]:
        """``{"done": ...}``: a resume checkpoint item (:mod:`monai_mammo.handlers.resume`), so a
        run resumed after the stage does not train it again."""
        return {"done": self.done}

    def load_state_dict(self, state: dict[str, bool]) -> None:
        self.done = bool(state["done"])

    def attach(self, engine: Any) -> None:
        engine.add_event_handler(self.event, self)

    def __call__(self, engine: Any = None) -> None:
        if not self.enabled:
            logger.info("%s: disabled, skipped", self.name)
            return
        if self.done or getattr(self.stage, "done", False):
            logger.info("%s: already done (resumed run), skipped", self.name)
            return
        distributed = self.main_rank_only and _distributed()
        if not distributed or torch.distributed.get_rank() == 0:
            logger.info("%s: started", self.name)
            self.result = self.stage()
            logger.info("%s: done", self.name)
        if distributed:
            torch.distributed.barrier()
        self.done = True


class TrainingStage:
    """A supervised training stage whose data, network and trainer are built when it is called.

    Order of construction (the random number streams are drawn in this order): ``data()``, a
    ``monai.data.Dataset`` of it, ``dataloader(dataset)``, ``network()`` moved to ``device``,
    ``optimizer(parameters)``, ``lr_scheduler(optimizer)`` (stepped per epoch by an
    ``LrScheduleHandler`` put before ``handlers``), ``trainer(train_data_loader=...,
    network=..., optimizer=..., train_handlers=...)``; then the trainer runs and ``save(network)``
    is returned (the network itself without ``save``).

    Example::

        >>> import functools, monai, torch
        >>> stage = TrainingStage(
        ...     data=lambda: [{"image": torch.ones(2), "label": torch.ones(1)}] * 4,
        ...     dataloader=functools.partial(monai.data.DataLoader, batch_size=2),
        ...     network=functools.partial(torch.nn.Linear, 2, 1),
        ...     optimizer=functools.partial(torch.optim.SGD, lr=0.1),
        ...     trainer=functools.partial(monai.engines.SupervisedTrainer, device="cpu", max_epochs=1,
        ...                               loss_function=torch.nn.MSELoss()),
        ...     lr_scheduler=functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5),
        ... )
        >>> stage().weight.shape, stage.optimizer_.param_groups[0]["lr"]
        (torch.Size([1, 2]), 0.05)

    Args:
        data: ``() -> sequence of samples`` (e.g. crops mined with the first stage's network).
        dataloader: ``(dataset) -> DataLoader``.
        network: ``() -> torch.nn.Module``.
        optimizer: ``(parameters) -> torch.optim.Optimizer``.
        trainer: ``(**kwargs) -> monai.engines.Trainer`` (e.g. a ``SupervisedTrainer`` partial with
            everything but its data loader, network, optimiser and handlers).
        lr_scheduler: ``(optimizer) -> scheduler`` or None. Default None.
        handlers: handlers added after the scheduler's (logging). Default none.
        save: ``(network) -> Any`` called after training (e.g. ``save_network`` with a path). Default None.
        device: where the network goes. Default "cpu".
    """

    def __init__(
        self,
        data: Callable[[], Sequence[Any]],
        dataloader: Callable[[Any], Any],
        network: Callable[[], torch.nn.Module],
        optimizer: Callable[[Any], torch.optim.Optimizer],
        trainer: Callable[..., Any],
        lr_scheduler: Callable[[torch.optim.Optimizer], Any] | None = None,
        handlers: Sequence[Any] = (),
        save: Callable[[torch.nn.Module], Any] | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.data, self.dataloader, self.network, self.optimizer = data, dataloader, network, optimizer
        self.trainer, self.lr_scheduler, self.handlers, self.save = trainer, lr_scheduler, list(handlers), save
        self.device = device
        self.done = False  # a resume checkpoint item (state_dict): a resumed run skips a done stage
        self.network_: torch.nn.Module | None = None
        self.optimizer_: torch.optim.Optimizer | None = None
        self.trainer_: Any = None

    def __call__(self) -> Any:
        from monai.data import Dataset
        from monai.handlers import LrScheduleHandler

        samples = self.data()
        loader = self.dataloader(Dataset(data=samples))
        network = self.network().to(self.device)
        optimizer = self.optimizer(network.parameters())
        handlers = list(self.handlers)
        if self.lr_scheduler is not None:
            handlers.insert(0, LrScheduleHandler(lr_scheduler=self.lr_scheduler(optimizer), print_lr=False))
        trainer = self.trainer(train_data_loader=loader, network=network, optimizer=optimizer, train_handlers=handlers)
        self.network_, self.optimizer_, self.trainer_ = network, optimizer, trainer
        trainer.run()
        result = self.save(network) if self.save is not None else network
        self.done = True
        return result

    def state_dict(self) -> dict[str, bool]:
        """``{"done": ...}``, for :mod:`monai_mammo.handlers.resume` (the ``StageHandler`` skips a
        done stage)."""
        return {"done": self.done}

    def load_state_dict(self, state: dict[str, bool]) -> None:
        self.done = bool(state["done"])
