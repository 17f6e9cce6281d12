import pytest
import torch
from torch.utils.data import Dataset, DistributedSampler, IterableDataset

from librobot.train.sampler import DataStream, ResumableSampler


class Noisy(Dataset):
    """Item i = i + global-RNG noise: reproducible only if the RNG is seeded per sample."""

    def __len__(self):
        return 37

    def __getitem__(self, i):
        return {"x": torch.tensor(float(i)) + torch.rand(()), "i": torch.tensor(i)}


@pytest.mark.parametrize("world, drop_last", [(1, False), (3, False), (3, True), (4, False)])
def test_order_and_sharding_match_distributed_sampler(world, drop_last):
    for rank in range(world):
        for epoch in (0, 5):
            ours = ResumableSampler(37, seed=11, rank=rank, world_size=world, drop_last=drop_last, with_seeds=False)
            ref = DistributedSampler(
                range(37), num_replicas=world, rank=rank, shuffle=True, seed=11, drop_last=drop_last
            )
            ours.set_epoch(epoch)
            ref.set_epoch(epoch)
            assert list(ours) == list(ref)
            assert len(ours) == len(ref)


def test_start_offset_resumes_inside_an_epoch_with_the_same_seeds():
    full = ResumableSampler(37, seed=3, rank=1, world_size=2)
    full.set_epoch(2)
    items = list(full)
    tail = ResumableSampler(37, seed=3, rank=1, world_size=2)
    tail.set_epoch(2)
    tail.set_start(7)
    assert list(tail) == items[7:]
    assert len({s for _, s in items}) == len(items)  # a distinct seed per position


def take(stream, n):
    return [next(stream) for _ in range(n)]


@pytest.mark.parametrize("workers", [0, 2])
def test_stream_resumes_to_identical_batches_across_epochs(workers):
    reference = take(DataStream(Noisy(), batch_size=5, seed=1, num_workers=0), 20)  # 7 batches per epoch
    stream = DataStream(Noisy(), batch_size=5, seed=1, num_workers=workers)
    first = take(stream, 9)
    state = stream.state_dict()
    assert state["epoch"] == 1 and state["batch_in_epoch"] == 2
    resumed = DataStream(Noisy(), batch_size=5, seed=1, num_workers=workers)
    resumed.load_state_dict(state)
    rest = take(resumed, 11)
    for got, want in zip(first + rest, reference):
        assert torch.equal(got["i"], want["i"]) and torch.equal(got["x"], want["x"])


def test_sample_randomness_does_not_touch_the_global_rng():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    take(DataStream(Noisy(), batch_size=4, seed=0), 3)
    assert torch.equal(torch.get_rng_state(), before)


class Counting(IterableDataset):
    def __init__(self):
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.epoch)
        yield from ({"v": v} for v in torch.randperm(10, generator=g))


def test_iterable_dataset_fast_forwards_on_resume():
    reference = take(DataStream(Counting(), batch_size=3), 7)  # 3 full batches per epoch
    stream = DataStream(Counting(), batch_size=3)
    take(stream, 4)
    resumed = DataStream(Counting(), batch_size=3)
    resumed.load_state_dict(stream.state_dict())
    for got, want in zip(take(resumed, 3), reference[4:]):
        assert torch.equal(got["v"], want["v"])


class _PerSample(Dataset):
    """Hides ``batched_images``: the same window dataset, loaded sample by sample."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        return self.dataset[i]


@pytest.mark.parametrize("workers", [0, 2])
def test_image_windows_load_batched_with_the_same_batches_and_resume(tmp_path, workers):
    from librobot.data.dataset import StoreDataset
    from librobot.data.store import write_episodes
    from librobot.data.synthetic import synthetic_episodes

    store = tmp_path / "eps.store"
    write_episodes(store, synthetic_episodes(3, seed=4))
    ds = StoreDataset(store, obs_horizon=2, action_horizon=3)
    fast = DataStream(ds, batch_size=4, seed=5, num_workers=workers)
    slow = DataStream(_PerSample(ds), batch_size=4, seed=5, num_workers=workers)
    assert fast.batched and not slow.batched
    expected = [next(slow) for _ in range(9)]  # past an epoch boundary
    got = [{k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in next(fast).items()} for _ in range(9)]
    for a, b in zip(got, expected):
        assert set(a) == set(b)
        for key, value in b.items():
            assert torch.equal(a[key], value) if isinstance(value, torch.Tensor) else a[key] == value, key
    resumed = DataStream(ds, batch_size=4, seed=5, num_workers=workers)
    state = DataStream(ds, batch_size=4, seed=5)
    for _ in range(5):
        next(state)
    resumed.load_state_dict(state.state_dict())
    batch = next(resumed)
    assert torch.equal(batch["observation.images.top"], expected[5]["observation.images.top"])
    assert float(batch["observation.images.top"].std()) > 0
