"""Your own data: CIFAR-10's and MedMNIST's files (generated stand-ins, no download),
normalisation, CIFAR augmentation, any (image, label) Dataset, and the sharded teacher
cache against the in-memory one."""

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import atkd_lite as ak
from atkd_lite.cache import CacheMismatchError, ShardedTeacherCache, TeacherCache
from atkd_lite.data import DatasetUnavailableError, DeviceBatcher, ImageSet, random_shift
from atkd_lite.datasets import (
    CIFAR10_FOLDER,
    check_items,
    read_cifar10_python,
    write_cifar10_standin,
    write_medmnist_npz,
)

# ------------------------------------------------------------------------------ CIFAR-10


def test_cifar_reader_places_pixels_as_krizhevsky_describes(tmp_path):
    """A batch written by hand (not by the package's writer): row = 1024 R, G, B values."""
    folder = tmp_path / CIFAR10_FOLDER
    folder.mkdir()
    row = np.zeros((2, 3072), dtype=np.uint8)
    row[0, 0] = 200             # red, top-left pixel of image 0
    row[0, 1024 + 33] = 100     # green, row 1, column 1
    row[1, 2048 + 1023] = 50    # blue, bottom-right pixel of image 1
    batch = {b"data": row, b"labels": [3, 7], b"batch_label": b"x"}  # Python 2 style keys
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    images, labels, classes = read_cifar10_python(folder, "train")
    assert images.shape == (10, 3, 32, 32) and labels.tolist() == [3, 7] * 5
    assert images[0, 0, 0, 0] == 200 and images[0, 1, 1, 1] == 100
    assert images[1, 2, 31, 31] == 50 and images.sum() == 5 * (200 + 100 + 50)
    assert classes[3] == "cat"


def test_cifar_stand_in_loads_offline_like_torchvision_reads_it(tmp_path, monkeypatch,
                                                                no_network):
    root = tmp_path / "cache"
    write_cifar10_standin(root / "datasets", n_train=50, n_test=20, seed=3)
    train = ak.load_dataset("cifar10", "train", root=root)
    test = ak.load_dataset("cifar10", "test", root=root)
    assert (len(train), len(test), train.in_channels, train.image_size) == (50, 20, 3, (32, 32))
    assert train.class_counts() == [5] * 10 and train.classes[0] == "airplane"

    # torchvision's own class refuses the stand-in (it checks each file's MD5) ...
    import torchvision.datasets as tvd

    with pytest.raises(RuntimeError, match="corrupted"):
        tvd.CIFAR10(str(root / "datasets"), train=True, download=False)
    # ... and reads the very same pixels once that check is switched off
    monkeypatch.setattr(tvd.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tvd.cifar, "check_integrity", lambda *a, **k: True)
    ref = tvd.CIFAR10(str(root / "datasets"), train=True, download=False)
    assert np.array_equal(train.images.permute(0, 2, 3, 1).numpy(), ref.data)
    assert train.labels.tolist() == list(ref.targets)


def test_cifar_unavailable_offline_names_the_offline_set(tmp_path, no_network):
    with pytest.raises(DatasetUnavailableError, match="mnist5k"):
        ak.load_dataset("cifar10", "train", root=tmp_path, timeout=5)


def test_a_pickle_with_code_is_refused(tmp_path):
    folder = tmp_path / CIFAR10_FOLDER
    folder.mkdir()
    (folder / "test_batch").write_bytes(pickle.dumps({"data": print}))
    with pytest.raises(ValueError, match="refusing to load builtins.print"):
        read_cifar10_python(folder, "test")


# ------------------------------------------------------------------------------- MedMNIST

def _medmnist(path, colour: bool, n=(12, 6, 4)):
    rng = np.random.default_rng(0)
    shape = (28, 28, 3) if colour else (28, 28)
    classes = 8 if colour else 2
    splits = {s: (rng.integers(0, 256, (k, *shape), dtype=np.uint8),
                  rng.integers(0, classes, (k, 1))) for s, k in zip(("train", "val", "test"), n)}
    write_medmnist_npz(path, splits)
    return splits


@pytest.mark.parametrize("name, colour", [("bloodmnist", True), ("pneumoniamnist", False)])
def test_medmnist_npz_in_its_own_format_loads(tmp_path, no_network, name, colour):
    splits = _medmnist(tmp_path / "datasets" / "medmnist" / f"{name}.npz", colour)
    for split, (images, labels) in splits.items():
        data = ak.load_dataset(name, split, root=tmp_path)
        channels = 3 if colour else 1
        assert tuple(data.images.shape) == (len(labels), channels, 28, 28)
        # channel-last (N, H, W, 3) becomes (N, 3, H, W); grey gets a channel axis
        expected = images.transpose(0, 3, 1, 2) if colour else images[:, None]
        assert np.array_equal(data.images.numpy(), expected)
        assert data.labels.tolist() == labels[:, 0].tolist()
        assert data.num_classes == (8 if colour else 2)


def test_medmnist_offline_fails_fast_naming_the_embedded_sets(tmp_path, no_network):
    with pytest.raises(DatasetUnavailableError, match=r"mnist5k.*digits-rgb.*cluttered"):
        ak.load_dataset("pneumoniamnist", "train", root=tmp_path, timeout=5)
    with pytest.raises(DatasetUnavailableError, match="download=False"):
        ak.load_dataset("bloodmnist", "train", root=tmp_path, download=False)
    with pytest.raises(ValueError, match="splits"):
        ak.load_dataset("bloodmnist", "fit", root=tmp_path)


# ---------------------------------------------------------- colour, normalisation, augmentation

def test_colour_digits_keep_the_digits_and_their_labels():
    rgb, grey = ak.load_dataset("digits-rgb", "val"), ak.load_dataset("mnist5k", "val")
    assert tuple(rgb.images.shape) == (500, 3, 32, 32)
    assert torch.equal(rgb.labels, grey.labels)
    assert torch.equal(rgb.images, ak.load_dataset("digits-rgb", "val").images)  # deterministic
    # the digit's ink is where it was, 2 pixels in: brightness follows the grey digit
    lum = rgb.images[:, :, 2:30, 2:30].float().mean(1)
    ink = grey.images[:, 0].float()
    r = torch.corrcoef(torch.stack([lum.flatten(), ink.flatten()]))[0, 1]
    assert r > 0.8
    stds = torch.tensor(rgb.channel_stats()[1])
    assert (stds > 0.05).all()


def test_channel_statistics_and_standardisation_match_numpy():
    data = ak.load_dataset("digits-rgb", "val").per_class(5)
    pixels = data.images.numpy().astype(np.float64) / 255
    mean, std = data.channel_stats()
    assert np.allclose(mean, pixels.mean(axis=(0, 2, 3)))
    assert np.allclose(std, pixels.std(axis=(0, 2, 3)))
    from atkd_lite.datasets import channel_stats

    assert np.allclose(channel_stats(data), (mean, std))  # any Dataset, read in batches
    norm = data.normalized()
    x, y, idx = next(iter(DeviceBatcher(norm, 16, shuffle=False)))
    raw = torch.from_numpy(pixels[:16]).float()
    expected = (raw - torch.tensor(mean).view(1, 3, 1, 1).float()) / torch.tensor(std).view(
        1, 3, 1, 1).float()
    assert torch.allclose(x, expected, atol=1e-5)
    assert torch.allclose(norm[3][0], expected[3], atol=1e-5)
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=0.35)
    test = ak.load_dataset("digits-rgb", "test").normalized(norm.normalize)
    assert test.normalize == norm.normalize and norm.subset([0, 1]).normalize == norm.normalize
    with pytest.raises(ValueError, match="one of each per channel"):
        data.normalized(((0.5,), (0.2,)))
    with pytest.raises(ValueError, match="positive standard deviations"):
        data.normalized(((0.5,) * 3, (0.2, 0.0, 0.1)))


def test_shift_is_torchvision_random_crop_with_padding():
    import torchvision.transforms.functional as TF

    x = torch.rand(3, 3, 32, 32)
    shifts = torch.tensor([[4, -4], [-2, 3], [0, 0]])
    out = random_shift(x, shifts, 4)
    padded = TF.pad(x, [4, 4, 4, 4])
    for b, (dy, dx) in enumerate(shifts.tolist()):
        assert torch.equal(out[b], TF.crop(padded[b], 4 - dy, 4 - dx, 32, 32))


def test_device_batcher_flips_half_the_images_and_nothing_else():
    data = ak.load_dataset("digits-rgb", "val").per_class(20)  # 200 images
    plain = {int(i): x for xs, _, idx in DeviceBatcher(data, 50, seed=4) for i, x in zip(idx, xs)}
    flipped_count = 0
    for xs, _, idx in DeviceBatcher(data, 50, seed=4, flip=True):
        for i, x in zip(idx.tolist(), xs):
            ref = plain[i]
            assert torch.equal(x, ref) or torch.equal(x, ref.flip(-1))
            flipped_count += not torch.equal(x, ref)
    assert 70 <= flipped_count <= 130
    # the shifts of a run without flips are unchanged by asking for flips
    a = next(iter(DeviceBatcher(data, 8, seed=2, augment=3)))[0]
    b = next(iter(DeviceBatcher(data, 8, seed=2, augment=3, flip=True)))[0]
    assert all(torch.equal(u, v) or torch.equal(u, v.flip(-1)) for u, v in zip(a, b))


def test_cache_refuses_augmentation():
    data = ak.load_dataset("mnist5k", "val").per_class(2)
    teacher = ak.teacher_cnn().eval()
    cache = TeacherCache.build(teacher, data, maps=["fma"], at=False, progress=False,
                               device="cpu")
    with pytest.raises(ValueError, match="flip=False"):
        ak.distill(teacher, ak.student_cnn("tiny"), data, cache=cache, flip=True, epochs=1,
                   progress=False, device="cpu")


# ------------------------------------------------------------------- any (image, label) set

def _image_folder(root, data: ImageSet):
    """Write ``data`` as PNG files in torchvision's ImageFolder layout (class folders)."""
    from PIL import Image

    order = []
    for c in range(data.num_classes):
        (root / f"class{c}").mkdir(parents=True)
    for i, (img, label) in enumerate(zip(data.images, data.labels.tolist())):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(root / f"class{label}" / f"{i:04d}.png")
    for c in range(data.num_classes):  # ImageFolder's order: by class, then by file name
        order += [i for i in range(len(data)) if int(data.labels[i]) == c]
    import torchvision

    folder = torchvision.datasets.ImageFolder(str(root),
                                              transform=torchvision.transforms.ToTensor())
    return folder, data.subset(order)


@pytest.fixture(scope="module")
def on_disk(tmp_path_factory):
    data = ak.load_dataset("digits-rgb", "val").per_class(4)   # 40 images
    folder, same = _image_folder(tmp_path_factory.mktemp("images"), data)
    torch.manual_seed(0)
    return folder, same, ak.student_cnn("tiny", in_channels=3).eval()


def test_items_that_are_not_image_label_pairs_are_named():
    with pytest.raises(TypeError, match="transform=torchvision.transforms.ToTensor"):
        from PIL import Image

        check_items([(Image.new("RGB", (4, 4)), 0)])
    with pytest.raises(TypeError, match=r"target_transform=lambda y: int\(y\[0\]\)"):
        check_items([(torch.zeros(3, 4, 4), np.array([1]))])
    with pytest.raises(TypeError, match="float tensors"):
        check_items([(torch.zeros(3, 4, 4, dtype=torch.uint8), 1)])
    with pytest.raises(TypeError, match="iterable-style"):
        ak.distill(ak.teacher_cnn().eval(), ak.student_cnn("tiny"), iter([]), epochs=1)
    with pytest.raises(TypeError, match=r"\(image, label\) pairs"):
        ak.distill(ak.teacher_cnn().eval(), ak.student_cnn("tiny"),
                   [(torch.zeros(1, 28, 28),)], epochs=1, progress=False, device="cpu")


def test_sharded_cache_from_files_equals_the_in_memory_cache(on_disk, tmp_path):
    folder, same, teacher = on_disk
    settings = dict(maps=("fma", "mip", "sals"), at=True, batch_size=8, device="cpu")
    memory = TeacherCache.build(teacher, same, progress=False, **settings)   # an ImageSet
    sharded = TeacherCache.build_sharded(teacher, folder, tmp_path / "cache", shard_size=16,
                                         progress=False, **settings)         # PNG files
    assert sharded.shard_lengths == [16, 16, 8]  # larger than one shard
    loaded = TeacherCache.load(tmp_path / "cache")  # memory-mapped, digests verified
    assert isinstance(loaded, ShardedTeacherCache)
    maps_file = Path("/proc/self/maps")
    if maps_file.exists():  # Linux: the shard files are mapped into this process
        mapped = maps_file.read_text()
        assert all(str(tmp_path / "cache" / f"shard-0000{k}.pt") in mapped for k in range(3))
    idx = torch.randperm(len(same), generator=torch.Generator().manual_seed(0))
    assert torch.equal(loaded.logits(idx), memory.logits(idx))
    for kind in ("fma", "mip", "sals"):
        assert torch.equal(loaded.maps(kind, idx), memory.maps(kind, idx)), kind
    for a, b in zip(loaded.at_maps(idx), memory.at_maps(idx)):
        assert torch.equal(a, b)
    assert torch.equal(loaded.shuffled(3).maps("fma", idx), memory.shuffled(3).maps("fma", idx))
    assert torch.equal(loaded.to("cpu").maps("sals", idx), memory.maps("sals", idx))
    # it is checked against the data it is used with, read without loading it whole
    loaded.check(folder, maps=["fma"], at=True, teacher=teacher)
    with pytest.raises(CacheMismatchError, match="built for"):
        loaded.check(torch.utils.data.Subset(folder, range(39)))
    with pytest.raises(TypeError, match="already saved"):
        loaded.save(tmp_path / "copy.cache")


def test_distill_reads_a_dataset_on_disk_with_its_sharded_cache(on_disk, tmp_path):
    folder, _, teacher = on_disk
    cache = TeacherCache.build_sharded(teacher, folder, tmp_path / "c", shard_size=16,
                                       batch_size=8, progress=False, device="cpu",
                                       maps=["fma"], at=False)
    runs = []
    for c in (cache, TeacherCache.build(teacher, folder, batch_size=8, progress=False,
                                        device="cpu", maps=["fma"], at=False)):
        torch.manual_seed(0)
        res = ak.distill(teacher, ak.student_cnn("tiny", in_channels=3), folder,
                         torch.utils.data.DataLoader(folder, batch_size=20), method="fma",
                         cache=c, epochs=1, batch_size=8, progress=False, device="cpu")
        runs.append(res.history.records[0])
    assert {k: v for k, v in runs[0].items() if k != "time_s"} == \
        {k: v for k, v in runs[1].items() if k != "time_s"}


def test_damaged_or_unfinished_sharded_cache_is_refused(on_disk, tmp_path):
    folder, _, teacher = on_disk
    out = tmp_path / "c"
    TeacherCache.build_sharded(teacher, folder, out, shard_size=16, batch_size=8,
                               progress=False, device="cpu", maps=["fma"], at=False)
    shard = out / "shard-00001.pt"
    blob = torch.load(shard)
    blob["maps.fma"][0, 0, 0] += 1
    torch.save(blob, shard)
    with pytest.raises(CacheMismatchError, match="shard-00001.pt is damaged"):
        TeacherCache.load(out)
    (out / "meta.json").unlink()
    with pytest.raises(CacheMismatchError, match="no finished sharded"):
        TeacherCache.load(out)


# ------------------------------------------------------------------------------- recipes

def test_cifar_recipe_runs_offline_on_the_stand_in_and_resumes(tmp_path, no_network, capsys,
                                                               monkeypatch):
    from atkd_lite import cli
    from atkd_lite.experiments import results as results_module

    # one clean commit for both sessions (a checkout with changes never resumes)
    monkeypatch.setattr(results_module, "_git_commit",
                        lambda: {"commit": "c0ffee", "dirty": False})
    from atkd_lite.experiments.recipes import PUBLISHED, published_markdown
    from atkd_lite.experiments.results import load_results

    root, out = tmp_path / "data", tmp_path / "out"
    write_cifar10_standin(root / "datasets", n_train=20, n_test=10)
    common = ["--output-dir", str(out), "--root", str(root), "--epochs", "1",
              "--teacher-epochs", "1", "--device", "cpu", "--no-progress"]
    assert cli.main(["recipe", "cifar10-wrn", "--methods", "student,at", *common]) == 0
    first = load_results(out)
    assert [r["method"] for r in first.runs] == ["student", "at"]
    assert first.settings["student_size"] == "WRN-16-1" and first.settings["augment"] == 4
    assert first.settings["train_size"] == 20 and len(first.settings["normalize"][0]) == 3
    assert first.teacher["parameters"] == 691_674 and "recipe cifar10-wrn" in \
        first.provenance["command"]
    assert (out / "teacher.pt").exists()
    # a second call keeps the finished runs and adds the new method only
    assert cli.main(["recipe", "cifar10-wrn", "--methods", "student,at,fma", *common]) == 0
    second = load_results(out)
    assert [r["method"] for r in second.runs] == ["student", "at", "fma"]
    assert second.runs[:2] == first.runs
    # runs of other code, or a file edited by hand, are never adopted: said, and run again
    monkeypatch.setattr(results_module, "_git_commit",
                        lambda: {"commit": "beef", "dirty": False})
    with pytest.warns(UserWarning, match="commit c0ffee, this code is beef"):
        assert cli.main(["recipe", "cifar10-wrn", "--methods", "student", *common]) == 0
    third = load_results(out)
    assert third.runs[0]["history"] != second.runs[0]["history"]  # trained again
    blob = json.loads((out / "results.json").read_text())
    blob["runs"][0]["test_acc"] = min(1.0, blob["runs"][0]["test_acc"] + 0.02)
    (out / "results.json").write_text(json.dumps(blob))
    with pytest.warns(UserWarning, match="edited or damaged"):
        assert cli.main(["recipe", "cifar10-wrn", "--methods", "student", *common]) == 0
    assert cli.main(["recipe", "imagenet", *common]) == 2
    assert "unknown recipe(s) imagenet" in capsys.readouterr().err
    table = published_markdown("cifar10-wrn")
    assert all(f"{r['accuracy']:.2f}" in table for r in PUBLISHED["cifar10-wrn"])
    assert "verified" in table and "Zagoruyko" in table
