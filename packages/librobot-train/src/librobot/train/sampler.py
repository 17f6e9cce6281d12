"""Deterministic, resumable data order.

- ``ResumableSampler``: epoch-seeded shuffling with the same permutation and rank sharding as
  ``torch.utils.data.DistributedSampler`` (``perm[rank::world]`` of ``randperm(n, seed + epoch)``),
  plus a start offset so an epoch can be re-entered at any batch.
- ``SeededDataset``: every sample is produced under RNGs seeded from (seed, epoch, position in the
  epoch's global order), so random augmentation in ``__getitem__`` does not depend on the number of
  DataLoader workers, on the world size, or on where a run was resumed.
- ``DataStream``: the endless micro-batch iterator the trainer pulls from; its state (epoch, batches
  consumed) is what a checkpoint records. It counts batches the loop consumed, not ones the
  DataLoader prefetched.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler

from librobot.core.errors import ConfigError
from librobot.core.logging import get_logger
from librobot.train.errors import TrainingError

log = get_logger("train.data")
_MASK64 = (1 << 64) - 1


def mix_seed(*values: int) -> int:
    """A well-spread 63-bit seed from integers (splitmix64 finaliser chained over the values)."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (int(v) & _MASK64)) & _MASK64
        h = (h + 0x9E3779B97F4A7C15) & _MASK64
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK64
        h ^= h >> 31
    return h >> 1


def seed_all(seed: int, *, cuda: bool = False) -> None:
    """Seed python, numpy and torch's CPU generator (and CUDA's when asked and present).

    ``torch.manual_seed`` is avoided on purpose: it also queues a lazy CUDA seeding that records
    a stack trace, which cost milliseconds per call — too much to pay per sample.
    """
    random.seed(seed)
    np.random.seed(seed & 0xFFFFFFFF)
    torch.default_generator.manual_seed(seed)
    if cuda and torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


@contextmanager
def isolated_rng(seed: int, *, cuda: bool = False) -> Iterator[None]:
    """Run the block with python/numpy/torch RNGs seeded from ``seed``; restore them afterwards."""
    py_state, np_state, torch_state = random.getstate(), np.random.get_state(), torch.default_generator.get_state()
    use_cuda = cuda and torch.cuda.is_available() and torch.cuda.is_initialized()  # type: ignore[no-untyped-call]
    cuda_states = torch.cuda.get_rng_state_all() if use_cuda else None
    seed_all(seed, cuda=use_cuda)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.default_generator.set_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)


class ResumableSampler(Sampler[Any]):
    """DistributedSampler's order and sharding, restartable at any position of an epoch.

    ``drop_last`` / padding follow DistributedSampler (pad by repeating the start of the order so
    every rank gets the same count); ``even=False`` gives uneven shards without repeats (evaluation).
    With ``with_seeds`` each item is ``(index, sample_seed)`` for ``SeededDataset``.
    """

    def __init__(
        self,
        length: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        even: bool = True,
        with_seeds: bool = True,
    ) -> None:
        if length <= 0:
            raise ConfigError("the dataset is empty: nothing to sample")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world of size {world_size}")
        self.length, self.seed, self.shuffle = length, int(seed), shuffle
        self.rank, self.world_size = rank, world_size
        self.drop_last, self.even, self.with_seeds = drop_last, even, with_seeds
        self.epoch = 0
        self.start = 0

    @property
    def shard_size(self) -> int:
        if not self.even:
            return len(range(self.rank, self.length, self.world_size))
        if self.drop_last:
            return self.length // self.world_size
        return math.ceil(self.length / self.world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def set_start(self, position: int) -> None:
        """Skip the first ``position`` items of this rank's shard in the current epoch."""
        self.start = max(0, int(position))

    def global_order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.length, generator=g).tolist()
        else:
            order = list(range(self.length))
        if self.even:
            total = self.shard_size * self.world_size
            if total > len(order):
                padding = total - len(order)
                order += (order * math.ceil(padding / len(order)))[:padding]
            order = order[:total]
        return order

    def __iter__(self) -> Iterator[Any]:
        order = self.global_order()
        positions = range(self.rank + self.start * self.world_size, len(order), self.world_size)
        for position in positions:
            index = order[position]
            yield (index, mix_seed(self.seed, self.epoch, position)) if self.with_seeds else index

    def __len__(self) -> int:
        return max(0, self.shard_size - self.start)


class SeededDataset(Dataset[Any]):
    """Wraps a map-style dataset; item ``(index, seed)`` is ``dataset[index]`` built under ``seed``."""

    def __init__(self, dataset: Dataset[Any]) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, item: tuple[int, int]) -> Any:
        index, seed = item
        with isolated_rng(seed):
            return self.dataset[index]

    def __getitems__(self, items: list[tuple[int, int]]) -> list[Any]:
        """A batch at once (DataLoader calls this): the caller's RNG states are saved and restored
        once per batch instead of once per sample; each sample is still seeded on its own."""
        if not items:
            return []
        samples = []
        with isolated_rng(items[0][1]):
            for index, seed in items:
                seed_all(seed)
                samples.append(self.dataset[index])
        return samples


def _reads_batches_in_place(dataset: Any) -> bool:
    if not hasattr(dataset, "batched_images"):  # not a librobot-data window dataset
        return False
    from librobot.data.loader import reads_batches_in_place

    return reads_batches_in_place(dataset)


def is_iterable(dataset: Any) -> bool:
    return isinstance(dataset, IterableDataset)


class DataStream:
    """Endless micro-batches over epochs, with a position a checkpoint can restore.

    Map-style datasets are sampled by ``ResumableSampler`` (resume = restart the epoch at the
    recorded batch). An ``IterableDataset`` gets ``set_epoch(epoch)`` when it has one, and a
    resume fast-forwards it by the consumed batches: exact when it yields the same items for the
    same epoch. Sharding an iterable over ranks is the dataset's job.
    """

    def __init__(
        self,
        dataset: Any,
        *,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        num_workers: int = 0,
        pin_memory: bool = False,
        collate_fn: Callable[[list[Any]], Any] | None = None,
    ) -> None:
        self.dataset = dataset
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.rank, self.world_size = rank, world_size
        self.num_workers, self.pin_memory, self.collate_fn = num_workers, pin_memory, collate_fn
        self.iterable = is_iterable(dataset)
        # window datasets with images and no per-sample randomness load whole batches into reused
        # shared memory (librobot.data.loader); they need no per-sample seeds
        self.batched = not self.iterable and collate_fn is None and _reads_batches_in_place(dataset)
        self.sampler: ResumableSampler | None = None
        if not self.iterable:
            if not hasattr(dataset, "__len__"):
                raise ConfigError(
                    f"{type(dataset).__name__} has no __len__: make it a map-style Dataset or an IterableDataset"
                )
            self.sampler = ResumableSampler(
                len(dataset), seed=seed, shuffle=shuffle, rank=rank, world_size=world_size, with_seeds=not self.batched
            )
            if self.sampler.shard_size < self.batch_size:
                raise ConfigError(
                    f"the dataset has {len(dataset)} samples, fewer than one batch per process "
                    f"(train.batch_size={batch_size} x {world_size} processes); lower the batch size or add data"
                )
        self.epoch = 0
        self.batch_in_epoch = 0
        self._iter: Iterator[Any] | None = None

    @property
    def batches_per_epoch(self) -> int | None:
        return None if self.sampler is None else self.sampler.shard_size // self.batch_size

    def _loader(self, dataset: Any, sampler: Any) -> DataLoader[Any]:
        generator = torch.Generator()
        generator.manual_seed(mix_seed(self.seed, self.epoch, 1))  # worker seeds; never touches the global RNG
        if self.batched:
            from librobot.data.loader import WindowLoader as loader_class
        else:
            loader_class = DataLoader
        return loader_class(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=True,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            collate_fn=self.collate_fn,
            generator=generator,
            **_worker_context(self.dataset, self.num_workers),
        )

    def _make_iter(self) -> Iterator[Any]:
        if self.sampler is not None:
            self.sampler.set_epoch(self.epoch)
            self.sampler.set_start(self.batch_in_epoch * self.batch_size)
            dataset = self.dataset if self.batched else SeededDataset(self.dataset)
            return iter(self._loader(dataset, self.sampler))
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.epoch)
        it = iter(self._loader(self.dataset, None))
        for skipped in range(self.batch_in_epoch):
            try:
                next(it)
            except StopIteration:
                raise TrainingError(
                    f"resuming needs {self.batch_in_epoch} batches of epoch {self.epoch} but the iterable dataset "
                    f"ended after {skipped}: it does not repeat the same items per epoch"
                ) from None
        return it

    def __iter__(self) -> DataStream:
        return self

    def __next__(self) -> Any:
        for attempt in range(2):
            if self._iter is None:
                self._iter = self._make_iter()
            try:
                batch = next(self._iter)
            except StopIteration:
                if attempt == 1 or self.batch_in_epoch == 0:
                    raise TrainingError(
                        f"epoch {self.epoch} of {type(self.dataset).__name__} produced no full batch of {self.batch_size}"
                    ) from None
                self.epoch += 1
                self.batch_in_epoch = 0
                self._iter = None
                continue
            self.batch_in_epoch += 1
            return batch
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._iter = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "batch_size": self.batch_size,
            "world_size": self.world_size,
            "iterable": self.iterable,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        samples = int(state["batch_in_epoch"]) * int(state["batch_size"]) * int(state["world_size"])
        per_batch = self.batch_size * self.world_size
        if samples % per_batch:
            log.warning("batch size or world size changed since the checkpoint: resuming the data order approximately")
        self.batch_in_epoch = samples // per_batch
        self._iter = None


def eval_batches(
    dataset: Any,
    *,
    batch_size: int,
    rank: int,
    world_size: int,
    seed: int,
    num_workers: int = 0,
    collate_fn: Callable[[list[Any]], Any] | None = None,
) -> DataLoader[Any]:
    """A fixed-order loader over this rank's share of an evaluation set (no repeats, last batch kept)."""
    generator = torch.Generator()
    generator.manual_seed(mix_seed(seed, 2))
    if is_iterable(dataset):
        return DataLoader(
            dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_fn, generator=generator
        )
    sampler = ResumableSampler(len(dataset), seed=seed, shuffle=False, rank=rank, world_size=world_size, even=False)
    return DataLoader(
        SeededDataset(dataset),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn,
        generator=generator,
        **_worker_context(dataset, num_workers),
    )


def _worker_context(dataset: Any, num_workers: int) -> dict[str, Any]:
    """How workers start: a dataset that is not fork-safe (video decoding) names its start method."""
    method = getattr(dataset, "worker_start_method", None)
    return {"multiprocessing_context": method} if method and num_workers > 0 else {}
