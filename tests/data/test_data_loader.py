"""WindowLoader: batches equal torch DataLoader's, slots are reused only once freed, and consumers
that keep batches get fresh memory instead of overwritten data."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, RandomSampler

from librobot.core.errors import ConfigError
from librobot.data.dataset import StoreDataset
from librobot.data.loader import BatchedWindows, SlotPool, WindowLoader
from librobot.data.store.reader import EpisodeStore
from librobot.data.transforms import RandomCropResize


def sampler(dataset, samples: int, seed: int = 3) -> RandomSampler:
    return RandomSampler(dataset, replacement=True, num_samples=samples, generator=torch.Generator().manual_seed(seed))


def assert_same_batches(got: list[dict], expected: list[dict]) -> None:
    assert len(got) == len(expected) > 0
    for i, (a, b) in enumerate(zip(got, expected)):
        assert set(a) == set(b), (i, sorted(set(a) ^ set(b)))
        for key in b:
            if isinstance(b[key], torch.Tensor):
                assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, (i, key)
                assert torch.equal(a[key], b[key]), (i, key)
            else:
                assert a[key] == b[key], (i, key)


@pytest.mark.parametrize("image_dtype", ["uint8", "float32"])
@pytest.mark.parametrize("workers", [0, 2])
def test_batches_equal_torch_dataloader(store_path, image_dtype, workers):
    ds = StoreDataset(store_path, obs_horizon=2, action_horizon=4, image_dtype=image_dtype)
    # 7 samples per batch and a last partial batch: slots are written partly, too
    expected = list(DataLoader(ds, batch_size=7, sampler=sampler(ds, 40), num_workers=workers))
    loader = WindowLoader(ds, batch_size=7, sampler=sampler(ds, 40), num_workers=workers)
    assert loader.fast
    got = [{k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in b.items()} for b in loader]
    assert_same_batches(got, expected)
    image = got[0]["observation.images.top"]
    assert image.shape == (7, 2, 3, 32, 32) and image.dtype == getattr(torch, image_dtype)
    assert float(image.float().std()) > 0  # real pixels, not an unwritten buffer


@pytest.mark.parametrize("workers", [0, 2])
def test_kept_batches_are_never_overwritten(store_path, workers):
    """A consumer holding every batch (more batches than slots) still gets each batch's own data."""
    ds = StoreDataset(store_path, obs_horizon=2, action_horizon=4, image_dtype="uint8")
    expected = list(DataLoader(ds, batch_size=5, sampler=sampler(ds, 60, seed=9), num_workers=workers))
    kept = list(
        WindowLoader(ds, batch_size=5, sampler=sampler(ds, 60, seed=9), num_workers=workers, slots_per_worker=2)
    )
    assert_same_batches(kept, expected)


def test_slot_is_reused_only_after_every_tensor_of_it_is_freed(store_path):
    ds = StoreDataset(store_path, obs_horizon=1, action_horizon=2, image_dtype="uint8")
    pool = SlotPool(
        {k: ds.image_window_shape(k) for k in ds.image_keys}, dtype=torch.uint8, batch_size=4, owners=1, per_owner=1
    )
    windows = BatchedWindows(ds, pool)
    first = windows.__getitems__([0, 1, 2, 3])
    assert pool.busy.tolist() == [1]
    view = first["observation.images.top"][1:3]  # a view outlives the batch's own tensors
    pixels = view.clone()
    del first
    gc.collect()
    assert pool.busy.tolist() == [1]
    second = windows.__getitems__([4, 5, 6, 7])  # no free slot: fresh memory, the view is intact
    assert torch.equal(view, pixels)
    assert second["observation.images.top"].data_ptr() != view.data_ptr()
    del view, second
    gc.collect()
    assert pool.busy.tolist() == [0]
    third = windows.__getitems__([8, 9])
    assert pool.busy.tolist() == [1]
    np.testing.assert_array_equal(
        third["observation.images.top"].numpy(),
        np.stack([ds[8]["observation.images.top"], ds[9]["observation.images.top"]]),
    )


def test_datasets_needing_per_sample_images_load_the_ordinary_way(store_path):
    transforms = RandomCropResize(size=(24, 24), generator=torch.Generator().manual_seed(0))
    ds = StoreDataset(store_path, obs_horizon=1, action_horizon=2, image_transforms=transforms)
    loader = WindowLoader(ds, batch_size=4, sampler=sampler(ds, 8))
    assert not loader.fast
    batch = next(iter(loader))
    assert batch["observation.images.top"].shape == (4, 1, 3, 24, 24)


def test_unsupported_arguments_are_named(store_path):
    ds = StoreDataset(store_path)
    with pytest.raises(ConfigError, match="collate_fn"):
        WindowLoader(ds, batch_size=2, collate_fn=lambda x: x)
    with pytest.raises(ConfigError, match="persistent_workers"):
        WindowLoader(ds, batch_size=2, num_workers=1, persistent_workers=True)


def test_take_into_out_equals_take(store_path):
    store = EpisodeStore(store_path)
    key = "observation.images.top"
    for indices in ([3, 4, 5], [0, 0, 1], [2], [20, 1, 26]):  # window, edge padding, one, scattered
        out = np.full((len(indices), *store.features[key].shape), 7, np.uint8)
        store.take(key, np.array(indices), out=out)
        np.testing.assert_array_equal(out, store.take(key, np.array(indices)))
    reference = EpisodeStore(store_path, fast=False)
    out = np.zeros((2, *store.features[key].shape), np.uint8)
    reference.take(key, np.array([5, 6]), out=out)
    np.testing.assert_array_equal(out, store.take(key, np.array([5, 6])))
