"""A DataLoader that hands image batches over in reused shared memory, without copies.

Memory touched for the first time is slow on these VMs (writing fresh pages runs at ~1 GB/s,
already-mapped memory at ~7 GB/s), and torch's DataLoader collates every batch into fresh memory:
fresh shared memory in each worker, fresh heap memory in the main process. For image windows that
costs more than reading them from the store. ``WindowLoader`` keeps torch's DataLoader (sampler,
order, workers, seeding) and changes only where a batch's images are written: into one of a few
preallocated shared slots, read straight from the store by a batched ``__getitems__``. The batch's
image tensors are views of the slot; the slot is reused once every tensor (and view) of it has been
freed. When all slots are still held (a consumer that keeps batches), a batch falls back to fresh
memory, so holding on to batches is safe, only slower. Batches equal ``DataLoader(dataset)``'s.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, default_collate, get_worker_info

from librobot.core.errors import ConfigError
from librobot.data._torch import torch

SLOT, COUNT = "_librobot_slot", "_librobot_count"


class SlotPool:
    """Per image key a shared buffer [slots, batch, T, C, H, W] in the samples' image dtype, and a
    shared busy flag per slot. Loader ``w`` (worker id, or 0 in the main process) owns slots
    ``[w * per_owner, (w + 1) * per_owner)``: only the owner sets a flag and only the consumer side
    clears it, so no two processes race for a slot."""

    def __init__(
        self, shapes: dict[str, tuple[int, ...]], *, dtype: Any, batch_size: int, owners: int, per_owner: int
    ) -> None:
        self.per_owner = per_owner
        slots = owners * per_owner
        self.buffers = {
            key: torch.empty((slots, batch_size, *shape), dtype=dtype).share_memory_() for key, shape in shapes.items()
        }
        self.busy = torch.zeros(slots, dtype=torch.int32).share_memory_()

    def acquire(self, owner: int) -> int | None:
        """A free slot of ``owner``'s, marked busy; None when all are still held."""
        busy = self.busy.numpy()
        for slot in range(owner * self.per_owner, (owner + 1) * self.per_owner):
            if busy[slot] == 0:
                busy[slot] = 1
                return slot
        return None

    def release(self, slot: int) -> None:
        self.busy[slot] = 0

    def lend(self, slot: int, n: int) -> dict[str, Any]:
        """The slot's first ``n`` samples as tensors; the slot is released when all of them are freed."""
        remaining = [len(self.buffers)]

        def returned() -> None:
            remaining[0] -= 1
            if remaining[0] == 0:
                self.release(slot)

        out = {}
        for key, buffer in self.buffers.items():
            view = buffer.numpy()[slot, :n]  # a new ndarray object: the tensor's storage keeps it alive
            weakref.finalize(view, returned)
            out[key] = torch.from_numpy(view)
        return out


class BatchedWindows:
    """Wraps a ``WindowDataset``: ``__getitems__`` builds a whole batch, images written in place."""

    def __init__(self, dataset: Any, pool: SlotPool | None = None) -> None:
        self.dataset = dataset
        self.pool = pool

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.dataset[index]

    def __getitems__(self, indices: Sequence[int]) -> dict[str, Any]:
        ds, n = self.dataset, len(indices)
        worker = get_worker_info()
        slot = self.pool.acquire(worker.id if worker else 0) if self.pool is not None else None
        if slot is not None:
            images = {k: buffer[slot, :n] for k, buffer in self.pool.buffers.items()}  # type: ignore[union-attr]
        else:  # no free slot: fresh memory, shared when it has to travel to the main process
            dtype = torch.uint8 if ds.image_dtype == "uint8" else torch.float32
            images = {k: torch.empty((n, *ds.image_window_shape(k)), dtype=dtype) for k in ds.image_keys}
            if worker is not None:
                images = {k: v.share_memory_() for k, v in images.items()}
        direct = ds.image_dtype == "uint8"
        arrays = {k: v.numpy() for k, v in images.items()}
        samples = []
        try:
            for i, index in enumerate(indices):

                def into_batch(key: str, frames: np.ndarray, i: int = i) -> None:
                    if direct:
                        ds._read_images_into(key, frames, arrays[key][i])
                    else:  # float [0, 1]: one pass from the uint8 frames into the batch
                        torch.div(torch.from_numpy(ds._read_images(key, frames)), 255.0, out=images[key][i])

                samples.append(ds._build(int(index), into_batch))
        except BaseException:
            if slot is not None:
                self.pool.release(slot)  # type: ignore[union-attr]  # nobody else knows of it
            raise
        batch = default_collate(samples)
        if slot is None:
            batch.update(images)
        elif worker is None:  # loading in the main process: lend the slot right away
            batch.update(self.pool.lend(slot, n))  # type: ignore[union-attr]
        else:  # the main process lends it when the batch arrives (tensors cannot travel as views)
            batch[SLOT], batch[COUNT] = slot, n
        return batch


def reads_batches_in_place(dataset: Any) -> bool:
    """Whether ``WindowLoader`` can read this dataset's batches straight into its slots: a window
    dataset with images and no per-sample image work (transforms, image normalisation)."""
    return bool(getattr(dataset, "batched_images", False)) and bool(getattr(dataset, "image_keys", None))


def _keep_batch(batch: Any) -> Any:
    """The collate step of a loader whose dataset already returns batches."""
    return batch


class WindowLoader(DataLoader):
    """``DataLoader(dataset, ...)`` for a ``WindowDataset``, images handed over in reused shared
    memory (see the module's text). Same arguments as DataLoader except ``collate_fn`` (the dataset
    collates) and ``persistent_workers`` (each iterator owns its slots). ``slots_per_worker``
    (default ``prefetch_factor + 2``, 3 without workers) bounds the memory: slots x batch x one sample's images.

    Datasets whose samples need per-sample image tensors (an image transform, a normaliser with
    image statistics) or that have no images are loaded the ordinary way.
    """

    def __init__(
        self, dataset: Any, batch_size: int = 1, *, slots_per_worker: int | None = None, **kwargs: Any
    ) -> None:
        for name in ("collate_fn", "persistent_workers", "batch_sampler"):
            if kwargs.pop(name, None):
                raise ConfigError(f"WindowLoader does not take {name}: use torch's DataLoader for that")
        if batch_size is None or batch_size < 1:
            raise ConfigError(f"WindowLoader needs a batch_size >= 1, got {batch_size}")
        self.window_dataset = dataset
        self.fast = reads_batches_in_place(dataset)
        # in flight per worker: its prefetched batches, plus the one or two its consumer holds;
        # loading in the main process: the batch being built and the one or two being used
        prefetch = (kwargs.get("prefetch_factor") or 2) if kwargs.get("num_workers") else 1
        self.slots_per_worker = slots_per_worker or prefetch + 2
        wrapped = BatchedWindows(dataset) if self.fast else dataset
        super().__init__(wrapped, batch_size, collate_fn=_keep_batch if self.fast else None, **kwargs)

    def __iter__(self) -> Iterator[Any]:
        if not self.fast:
            yield from super().__iter__()
            return
        ds = self.window_dataset
        pool = SlotPool(
            {k: ds.image_window_shape(k) for k in ds.image_keys},
            dtype=torch.uint8 if ds.image_dtype == "uint8" else torch.float32,
            batch_size=self.batch_size,  # type: ignore[arg-type]
            owners=max(1, self.num_workers),
            per_owner=self.slots_per_worker,
        )
        self.dataset.pool = pool  # the workers this iterator starts inherit this iterator's pool
        for batch in super().__iter__():
            if isinstance(batch, dict) and SLOT in batch:
                batch.update(pool.lend(batch.pop(SLOT), batch.pop(COUNT)))
            yield batch
