"""monai_mammo.handlers.stage: a cascade stage run when a trainer completes, built only then."""

from __future__ import annotations

import functools

import monai
import pytest
import torch
from ignite.engine import Engine

from monai_mammo.handlers.stage import StageHandler, TrainingStage


def _engine() -> Engine:
    return Engine(lambda engine, batch: None)


def test_stage_runs_once_after_the_last_epoch() -> None:
    calls = []
    engine = _engine()
    handler = StageHandler(lambda: calls.append(engine.state.epoch) or "saved", name="second")
    handler.attach(engine)
    engine.run([0, 1, 2], max_epochs=3)
    assert calls == [3] and handler.result == "saved"


def test_disabled_stage_is_skipped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    calls = []
    engine = _engine()
    StageHandler(lambda: calls.append(1), enabled=False, name="FPR stage").attach(engine)
    with caplog.at_level("INFO", logger="monai_mammo.handlers.stage"):
        engine.run([0], max_epochs=1)
    assert calls == [] and "FPR stage: disabled, skipped" in caplog.text
    with pytest.raises(TypeError, match="must be callable"):
        StageHandler("not a stage")


def test_distributed_rank_zero_runs_the_others_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    events = []
    monkeypatch.setattr("monai_mammo.handlers.stage._distributed", lambda: True)
    monkeypatch.setattr(torch.distributed, "barrier", lambda: events.append("barrier"))
    for rank in (0, 1):
        monkeypatch.setattr(torch.distributed, "get_rank", lambda rank=rank: rank)
        StageHandler(lambda rank=rank: events.append(f"stage on {rank}"))()
    assert events == ["stage on 0", "barrier", "barrier"]
    StageHandler(lambda: events.append("every rank"), main_rank_only=False)()
    assert events[-1] == "every rank"


def test_training_stage_builds_everything_when_called_in_order() -> None:
    order = []

    def record(name, factory):
        def build(*args, **kwargs):
            order.append(name)
            return factory(*args, **kwargs)

        return build

    saved = []
    stage = TrainingStage(
        data=record("data", lambda: [{"image": torch.full((2,), float(i)), "label": torch.ones(1)} for i in range(4)]),
        dataloader=record("dataloader", functools.partial(monai.data.DataLoader, batch_size=2)),
        network=record("network", functools.partial(torch.nn.Linear, 2, 1)),
        optimizer=record("optimizer", functools.partial(torch.optim.SGD, lr=0.1)),
        lr_scheduler=record("lr_scheduler", functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)),
        trainer=record("trainer", functools.partial(monai.engines.SupervisedTrainer, device="cpu", max_epochs=2,
                                                    loss_function=torch.nn.MSELoss())),
        handlers=[monai.handlers.StatsHandler(iteration_log=False)],
        save=lambda network: saved.append(network) or "path/to/saved.pt",
    )
    assert order == []  # nothing is built before the stage runs
    assert stage() == "path/to/saved.pt"
    assert order == ["data", "dataloader", "network", "optimizer", "lr_scheduler", "trainer"]
    assert saved == [stage.network_]
    assert stage.trainer_.state.epoch == 2 and stage.trainer_.state.iteration == 4
    assert stage.optimizer_.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**2)  # stepped once per epoch
