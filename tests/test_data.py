import numpy as np
import pytest
import torch

import atkd_lite as ak
from atkd_lite.data import (
    DatasetUnavailableError,
    DeviceBatcher,
    ImageSet,
    load_dataset,
    make_batches,
    random_shift,
)


def test_embedded_splits_shapes_balance_and_disjointness(no_network):
    train, test = load_dataset("mnist5k", "train"), load_dataset("mnist5k", "test")
    fit, val = load_dataset("mnist5k", "fit"), load_dataset("mnist5k", "val")
    assert (len(train), len(test), len(fit), len(val)) == (4000, 1000, 3500, 500)
    assert train.images.dtype == torch.uint8 and train.images.shape[1:] == (1, 28, 28)
    assert train.labels.dtype == torch.int64
    assert train.class_counts() == [400] * 10 and test.class_counts() == [100] * 10
    assert val.class_counts() == [50] * 10

    def rows(ds):
        return {bytes(r) for r in ds.images.reshape(len(ds), -1).numpy()}

    # the source has a few duplicate digits, so compare by row count of the union
    raw = ak.data._embedded_arrays()[0].reshape(5000, -1)
    assert len({bytes(r) for r in raw}) >= len(rows(train) | rows(test)) > 4900
    assert rows(fit) | rows(val) == rows(train)
    # real MNIST: ink values span 0..255 and a digit covers a fraction of the canvas
    assert train.images.max() == 255 and 0.05 < (train.images > 0).float().mean() < 0.4


def test_embedded_split_is_deterministic_and_seeded():
    a, b = load_dataset("mnist5k", "test"), load_dataset("mnist5k", "test")
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    c = ak.embedded_mnist("test", seed=1)
    assert not torch.equal(a.images, c.images)


def test_per_class_subset_is_stratified_and_deterministic():
    train = load_dataset("mnist5k", "train")
    small = train.per_class(100, seed=3)
    assert len(small) == 1000 and small.class_counts() == [100] * 10
    assert torch.equal(small.images, train.per_class(100, seed=3).images)
    with pytest.raises(ValueError, match="fewer than"):
        train.per_class(401)


def test_getitem_gives_float_in_unit_range():
    x, y = load_dataset("mnist5k", "test")[0]
    assert x.dtype == torch.float32 and x.shape == (1, 28, 28)
    assert 0 <= float(x.min()) and float(x.max()) <= 1 and isinstance(int(y), int)


def test_unknown_dataset_lists_known_names():
    with pytest.raises(ValueError, match="mnist5k.*cluttered"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="split"):
        load_dataset("mnist5k", "validation")


def test_failed_download_names_offline_set(no_network, tmp_path):
    with pytest.raises(DatasetUnavailableError, match="mnist5k"):
        load_dataset("mnist", "train", root=tmp_path, timeout=2)


def test_unwritable_cache_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(PermissionError, match="ATKD_LITE_CACHE"):
        ak.cache_dir(blocker / "sub")


def test_cluttered_digit_lies_inside_its_box():
    ds = ak.cluttered_mnist("test")
    assert ds.images.shape == (1000, 1, 56, 56) and ds.boxes.shape == (1000, 4)
    base = load_dataset("mnist5k", "test")
    assert torch.equal(ds.labels, base.labels)
    for i in range(0, 1000, 97):
        x0, y0, x1, y1 = ds.boxes[i].tolist()
        digit = base.images[i, 0]
        rows = torch.nonzero(digit.amax(1)).flatten()
        cols = torch.nonzero(digit.amax(0)).flatten()
        assert (y1 - y0, x1 - x0) == (rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
        crop = ds.images[i, 0, y0:y1, x0:x1]
        tight = digit[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        # clutter never overlaps the box, so the box shows exactly the digit
        assert torch.equal(crop, tight)
        outside = ds.images[i, 0].clone()
        outside[y0:y1, x0:x1] = 0
        assert outside.sum() > 0  # there is clutter
    again = ak.cluttered_mnist("test")
    assert torch.equal(again.images, ds.images) and torch.equal(again.boxes, ds.boxes)


def test_device_batcher_covers_every_index_once_per_epoch():
    data = load_dataset("mnist5k", "test")
    batcher = DeviceBatcher(data, batch_size=128, seed=0)
    assert len(batcher) == 8
    for _ in range(2):
        seen = torch.cat([idx for _, _, idx in batcher])
        assert torch.equal(seen.sort().values, torch.arange(1000))
    x, y, idx = next(iter(DeviceBatcher(data, 16, shuffle=False)))
    assert torch.equal(idx, torch.arange(16))
    assert torch.allclose(x, data.images[:16].float() / 255) and torch.equal(y, data.labels[:16])


def test_device_batcher_is_seeded():
    data = load_dataset("mnist5k", "test")
    a = [idx for _, _, idx in DeviceBatcher(data, 100, seed=5)]
    b = [idx for _, _, idx in DeviceBatcher(data, 100, seed=5)]
    c = [idx for _, _, idx in DeviceBatcher(data, 100, seed=6)]
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not all(torch.equal(p, q) for p, q in zip(a, c))


def test_loader_path_matches_device_path():
    data = load_dataset("mnist5k", "test").subset(range(50))
    fast = list(make_batches(data, 10, shuffle=False, on_device=True))
    slow = list(make_batches(data, 10, shuffle=False, on_device=False))
    for (x1, y1, i1), (x2, y2, i2) in zip(fast, slow):
        assert torch.equal(x1, x2) and torch.equal(y1, y2) and torch.equal(i1, i2)


def test_random_shift_matches_a_per_sample_roll():
    x = torch.rand(4, 2, 9, 7)
    shifts = torch.tensor([[0, 0], [1, -2], [-3, 2], [2, 1]])
    out = random_shift(x, shifts)
    for b, (dy, dx) in enumerate(shifts.tolist()):
        ref = torch.zeros_like(x[b])
        src = x[b, :, max(0, -dy):9 - max(0, dy), max(0, -dx):7 - max(0, dx)]
        ref[:, max(0, dy):max(0, dy) + src.shape[1], max(0, dx):max(0, dx) + src.shape[2]] = src
        assert torch.equal(out[b], ref)


def test_imageset_validates_its_tensors():
    with pytest.raises(TypeError, match="uint8"):
        ImageSet(torch.zeros(3, 1, 4, 4), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        ImageSet(torch.zeros(3, 1, 4, 4, dtype=torch.uint8), torch.zeros(2, dtype=torch.long))
    empty = ImageSet(torch.zeros(0, 1, 4, 4, dtype=torch.uint8), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="empty"):
        DeviceBatcher(empty)
    assert np.isclose(len(load_dataset("mnist5k", "val")), 500)
