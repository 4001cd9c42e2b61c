"""Helpers for bundles run under ``torchrun`` (``torch.distributed``; gloo on CPU, NCCL on GPUs).

* :func:`check_replicas_identical`: after distributed training, every rank must hold the same
  parameters (DDP averages gradients, so replicas that drift mean a rank skipped a step or a
  handler that changes training); the multi-GPU configs call it at the end of ``run``.
* :func:`gather_interleaved`: per-sample arrays of a rank's ``DistributedSampler(shuffle=False)``
  shard back into dataset order on every rank, so a distributed evaluation writes exactly what a
  single process writes (a bootstrap CI depends on the sample order, not only on the set).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import torch

from monai_mammo.checkpoints import unwrap_network

__all__ = ["is_distributed", "check_replicas_identical", "gather_interleaved", "IdenticalReplicasCheck"]

logger = logging.getLogger(__name__)


def is_distributed() -> bool:
    """True inside an initialised ``torch.distributed`` process group."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def check_replicas_identical(network: torch.nn.Module) -> int:
    """Raise unless every rank's parameters are bit-identical to rank 0's; return the number of
    tensors compared (outside a process group: none compared, 0).

    Buffers (BatchNorm running statistics) are not compared: each rank updates them on its own
    batch, and DDP (``broadcast_buffers=True``) copies rank 0's to every rank at the start of the
    next forward, so after the last step they may differ by that step; rank 0's are the ones saved.

    Rank 0's tensors are broadcast and compared with ``torch.equal`` on every rank; a mismatch
    flag is then summed over the ranks, so every rank raises (none waits forever).

    Raises:
        RuntimeError: naming the ranks and the first tensor that differ.
    """
    if not is_distributed():
        return 0
    dist = torch.distributed
    state = dict(unwrap_network(network).named_parameters())
    first_differing = ""
    for name, tensor in state.items():
        reference = tensor.detach().clone()
        dist.broadcast(reference, src=0)
        if not first_differing and not torch.equal(reference, tensor.detach()):
            first_differing = name
    device = next(iter(state.values())).device if state else torch.device("cpu")
    flags = torch.zeros(dist.get_world_size(), dtype=torch.int64, device=device)
    flags[dist.get_rank()] = int(bool(first_differing))
    dist.all_reduce(flags)
    if flags.any():
        ranks = [r for r, f in enumerate(flags.tolist()) if f]
        raise RuntimeError(f"ranks {ranks} hold parameters that differ from rank 0's (rank {dist.get_rank()}: {first_differing or 'none'})")
    logger.info("parameters identical on %d ranks (%d tensors)", dist.get_world_size(), len(state))
    return len(state)


def gather_interleaved(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each rank's per-sample arrays, gathered on every rank in dataset order.

    ``DistributedSampler(shuffle=False, even_divisible=False)`` (MONAI's) gives rank ``r`` of ``W``
    the samples ``r, r + W, r + 2W, ...``; this undoes that split. Outside a process group the
    arrays come back unchanged.

    Example::

        >>> gather_interleaved({"prob": np.array([0.1, 0.2])})["prob"]
        array([0.1, 0.2])
    """
    if not is_distributed():
        return {k: np.asarray(v) for k, v in arrays.items()}
    dist = torch.distributed
    world = dist.get_world_size()
    shards: list = [None] * world
    dist.all_gather_object(shards, {k: np.asarray(v) for k, v in arrays.items()})
    out = {}
    for key in arrays:
        parts = [shard[key] for shard in shards]
        total = sum(len(p) for p in parts)
        merged = np.empty((total, *parts[0].shape[1:]), dtype=parts[0].dtype)
        for rank, part in enumerate(parts):
            if len(part) != len(range(rank, total, world)):
                raise ValueError(f"gather_interleaved: rank {rank} holds {len(part)} of {total} samples, not its strided share")
            merged[rank::world] = part
        out[key] = merged
    return out


class IdenticalReplicasCheck:
    """:func:`check_replicas_identical` as an Ignite handler, at ``Events.COMPLETED`` of the trainer
    it is attached to. Put it first in the handlers when a later handler changes the network on one
    rank (ASN: the FPR stage loads the best checkpoint into rank 0's network to mine candidates).

    Args:
        network: the (DDP-wrapped) network the trainer trains.
    """

    def __init__(self, network: torch.nn.Module) -> None:
        self.network = network

    def attach(self, engine) -> None:  # noqa: ANN001 (an Ignite engine)
        from ignite.engine import Events

        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine=None) -> None:  # noqa: ANN001
        check_replicas_identical(self.network)
