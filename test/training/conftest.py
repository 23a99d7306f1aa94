"""Fixtures for the training tests: a tiny synthetic episode data set and a tiny policy."""
import json

import numpy as np
import pytest

from genpolicy_ros.data.episodes import DatasetMetadata, Episode, write_dataset

# A policy small enough to train a few hundred steps in seconds on one thread.
TINY_POLICY = {
    "horizon": {"T_o": 2, "T_p": 8, "T_a": 4},
    "network": {"name": "unet1d", "params": {"down_dims": [16, 32], "kernel_size": 3, "time_embed_dim": 16}},
    "encoder": {"params": {"proprio_feature_dim": 16, "proprio_hidden": [32]}},
}


def synthetic_episodes(n_episodes=6, length=40, dt=0.1, seed=0, cameras=None):
    """2-joint arm moving along phase-shifted sinusoids; the action is the next state."""
    rng = np.random.default_rng(seed)
    episodes = []
    for _ in range(n_episodes):
        t = np.arange(length + 1) * dt  # [N+1]
        phase = rng.uniform(0, 2 * np.pi)
        q = np.stack([np.sin(t + phase), 0.5 * np.cos(2 * t + phase)], axis=1).astype(np.float32)  # [N+1, 2]
        images = {}
        for cam, (h, w) in (cameras or {}).items():
            images[cam] = rng.integers(0, 256, size=(length, h, w, 3), dtype=np.uint8)  # [N, H, W, 3]
        episodes.append(Episode(timestamp=100.0 + t[:-1], action=q[1:], state=q[:-1], images=images))
    return episodes


@pytest.fixture
def tiny_policy():
    """The 'policy' section of a config file for a tiny network (see TINY_POLICY)."""
    return json.loads(json.dumps(TINY_POLICY))


@pytest.fixture
def tiny_dataset(tmp_path):
    """Path of a 6-episode, 40-sample, state-only data set (240 windows)."""
    meta = DatasetMetadata(joint_names=["j0", "j1"], state_names=["j0", "j1"], dt=0.1)
    root = tmp_path / "data"
    write_dataset(root, meta, synthetic_episodes())
    return root
