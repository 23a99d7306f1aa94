"""``python -m genpolicy_ros.sim.collect_offline``: paired obstacle demonstrations as an episode data set."""
import numpy as np
import pytest

from genpolicy_ros.sim.reach_env import ensure_headless_gl

ensure_headless_gl()  # before the first `import mujoco` (a later test renders)
pytest.importorskip("mujoco")

from genpolicy_ros.data.episodes import EpisodeDataset  # noqa: E402
from genpolicy_ros.sim.collect_offline import main  # noqa: E402


def test_paired_obstacle_episodes_share_each_start_and_bend_opposite_ways(tmp_path):
    out = tmp_path / "obst"
    assert main(["--obstacle", "--paired", "--episodes", "4", "--out", str(out), "--no-progress"]) == 0
    data = EpisodeDataset(out)
    assert len(data) == 4 and "obstacle variant" in data.metadata.description
    episodes = list(data)
    for first, second in (episodes[0:2], episodes[2:4]):
        np.testing.assert_array_equal(first.state[0], second.state[0])  # same start and target
        assert np.sign(first.state[-1, 1]) == -np.sign(second.state[-1, 1]) != 0  # elbow up vs down
    assert not np.array_equal(episodes[0].state[0], episodes[2].state[0])
    assert main(["--episodes", "3", "--paired", "--out", str(tmp_path / "odd")]) == 2
    assert main(["--episodes", "2", "--out", str(out)]) == 1  # never overwrites
