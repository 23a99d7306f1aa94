"""Fixtures of the data-format tests (builders in data_fixtures.py)."""
import pytest

from data_fixtures import make_lerobot, make_robomimic


@pytest.fixture
def lerobot_dir(tmp_path):
    return make_lerobot(tmp_path / "lerobot")


@pytest.fixture
def lerobot_factory(tmp_path):
    counter = iter(range(1000))
    return lambda **kw: make_lerobot(tmp_path / f"lerobot_{next(counter)}", **kw)


@pytest.fixture
def robomimic_file(tmp_path):
    return make_robomimic(tmp_path / "demo.hdf5")


@pytest.fixture
def robomimic_factory(tmp_path):
    counter = iter(range(1000))
    return lambda **kw: make_robomimic(tmp_path / f"demo_{next(counter)}.hdf5", **kw)

