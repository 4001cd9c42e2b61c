"""Validation every ``interval`` epochs **and** at the end of a run that was not validated last.

MONAI's ``ValidationHandler`` validates at epochs ``interval, 2 x interval, ...`` only: a run
shorter than ``interval`` (e.g. MONAI Label's train request with ``max_epochs: 1`` on a bundle
that validates every 5 epochs) never validates, so its ``CheckpointSaver`` (a validation handler)
saves nothing, and a cascade stage run when the trainer completes would be mined with the previous
run's weights. :class:`EndOfRunValidationHandler` adds one validation when the trainer completes
after an epoch that was not validated. Put it before any handler of the trainer's ``COMPLETED``
event that needs the saved checkpoint (e.g. a :class:`~monai_mammo.handlers.stage.StageHandler`):
Ignite calls a event's handlers in the order they were attached.
"""

from __future__ import annotations

import logging
from typing import Any

from monai.handlers import ValidationHandler
from monai.utils import min_version, optional_import

Events, _ = optional_import("ignite.engine", "0.4.11", min_version, "Events")

__all__ = ["EndOfRunValidationHandler"]

logger = logging.getLogger(__name__)


class EndOfRunValidationHandler(ValidationHandler):
    """``ValidationHandler`` (every ``interval`` epochs) that also validates when the trainer
    completes after an epoch that was not validated (a subclass, so handler selections by type,
    e.g. multi-GPU configs, treat it as a ``ValidationHandler``).

    Example::

        >>> from ignite.engine import Engine
        >>> runs = []
        >>> class Validator:
        ...     def run(self, epoch):
        ...         runs.append(epoch)
        >>> trainer = Engine(lambda engine, batch: None)
        >>> handler = EndOfRunValidationHandler(interval=5)
        >>> handler.validator = Validator()      # (MONAI's type check wants an Evaluator)
        >>> handler.attach(trainer)
        >>> _ = trainer.run([0], max_epochs=1)   # shorter than the interval: validated at the end
        >>> _ = trainer.run([0], max_epochs=5)   # epoch 5 validated by the interval, not again
        >>> runs
        [1, 5]

    Args:
        validator: the evaluator (anything with ``run(epoch)``); may be set later as in MONAI.
        interval: validate every ``interval`` epochs (iterations when ``epoch_level`` is False).
        epoch_level: as in ``ValidationHandler``. Default True.
        exec_at_start: as in ``ValidationHandler``. Default False.
    """

    def __init__(self, validator: Any = None, interval: int = 1, epoch_level: bool = True, exec_at_start: bool = False) -> None:
        super().__init__(interval=interval, validator=validator, epoch_level=epoch_level, exec_at_start=exec_at_start)

    def attach(self, engine: Any) -> None:
        super().attach(engine)
        engine.add_event_handler(Events.COMPLETED, self._at_end)

    def _at_end(self, engine: Any) -> None:
        # the last periodic validation ran at the last full multiple of the interval
        done = engine.state.epoch if self.epoch_level else engine.state.iteration
        if done == 0 or done % self.interval == 0:
            return
        logger.info("validation at the end of the run (epoch %d; interval %d)", engine.state.epoch, self.interval)
        self(engine)
