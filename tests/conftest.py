"""Shared test setup: headless matplotlib, a private cache directory, no network."""

import os

import matplotlib
import pytest

#: a method file as a user writes one, imported by tests/test_methods.py itself (collected
#: for doctests, it would register its method for every other test module)
collect_ignore = ["example_method_cmax.py"]

matplotlib.use("Agg")
os.environ.setdefault("ATKD_LITE_PROFILE", "cpu")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own cache dir unless it sets one (never the user's cache)."""
    if "ATKD_LITE_TEST_CACHE" not in os.environ:
        monkeypatch.setenv("ATKD_LITE_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def no_network(monkeypatch):
    """Make every outgoing connection fail at once, as on a machine without a network."""
    import socket

    def refuse(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture(scope="module")
def digits():
    """Twenty training digits, ten validation digits and an untrained teacher (a module
    may define its own ``digits``)."""
    import torch

    import atkd_lite as ak

    train = ak.load_dataset("mnist5k", "train").per_class(2)
    test = ak.load_dataset("mnist5k", "val").per_class(1)
    torch.manual_seed(0)
    return train, test, ak.teacher_cnn().eval()
