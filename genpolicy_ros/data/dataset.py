"""Training windows cut from episodes, aligned by timestamps.

For an *anchor* sample with stamp ``t`` (every sample of every episode may be one) a
window holds, with ``dt`` the nominal period of the data set (``docs/internals.md``)::

    observations at  t-(T_o-1)·dt, …, t-dt, t              -> obs rows   [T_o]
    actions      at  t, t+dt, …, t+(T_p-1)·dt               -> action rows [T_p]

          obs  obs  obs(t)
    ───────┼────┼────┼────┼────┼────┼────┼──▶ time
                   act0 act1 act2 …  act(T_p-1)

Each query time picks the episode sample whose stamp is nearest (ties go to the earlier
sample), so jittered or slightly irregular stamps still give sensible windows. A query
before the first stamp or after the last picks the first/last sample: the window is
padded by repeating the edge sample, as Diffusion Policy's ``SequenceSampler`` pads
(Chi et al. 2023, arXiv 2303.04137). ``pad_after`` limits how many action rows of a
window may lie past the end of its episode, i.e. more than dt/2 after its last stamp
(Diffusion Policy uses T_a − 1); anchors that would need more are not used. The default
(T_p − 1) keeps every sample as anchor.

Each item is the batch layout of ``docs/internals.md`` without the batch dimension::

    {"obs": {"state": [T_o, D_s] float32,
             "images": {camera: [T_o, 3, H, W] float32 in [0, 1]}},   # only with cameras
     "action": [T_p, D_a] float32,
     "aux_state": [T_o, D_aux] float32}                                # only with aux_state_names

``state_names`` picks (by name, in that order) the data set's state entries the policy
observes — default all of them; ``aux_state_names`` picks training-only entries returned as
``aux_state`` at the observation rows (``core.config.AuxiliaryConfig``).

All episodes are held in memory (uint8 images), which suits the small demonstration
sets this package trains on.
"""
from __future__ import annotations

from typing import Iterable, List, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from .episodes import DatasetMetadata, Episode, EpisodeDataset


def nearest_indices(stamps: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Index of the stamp nearest to each query (ties → earlier), clamped to the ends.

    ``stamps`` [N] strictly increasing; ``queries`` any shape → same-shape int64 array.
    """
    stamps = np.asarray(stamps, dtype=np.float64)
    queries = np.asarray(queries, dtype=np.float64)
    right = np.searchsorted(stamps, queries, side="left")  # first stamp >= query
    right = np.clip(right, 0, len(stamps) - 1)
    left = np.clip(right - 1, 0, len(stamps) - 1)
    pick_left = np.abs(queries - stamps[left]) <= np.abs(stamps[right] - queries)
    return np.where(pick_left, left, right).astype(np.int64)


class WindowDataset(Dataset):
    """Torch dataset of (observation history, action chunk) windows; see module docstring.

    Args:
        episodes: an :class:`EpisodeDataset`, or a sequence of :class:`Episode` with
            ``metadata`` given.
        T_o: observation history length (>= 1).
        T_p: action chunk length (>= 1).
        dt: window spacing in seconds; defaults to the data set's nominal ``dt``.
        pad_after: max action rows past the episode end (0 … T_p − 1; default T_p − 1).
        metadata: needed when ``episodes`` is a plain sequence.
        cameras: which cameras to return (default: all in the metadata).
    """

    def __init__(
        self,
        episodes: Union[EpisodeDataset, Sequence[Episode]],
        T_o: int,
        T_p: int,
        dt: Optional[float] = None,
        pad_after: Optional[int] = None,
        metadata: Optional[DatasetMetadata] = None,
        cameras: Optional[Iterable[str]] = None,
        state_names: Optional[Sequence[str]] = None,
        aux_state_names: Sequence[str] = (),
    ):
        if isinstance(episodes, EpisodeDataset):
            metadata = episodes.metadata if metadata is None else metadata
            episodes = list(episodes)
        if metadata is None:
            raise ValueError("WindowDataset: metadata is required when episodes is a plain sequence")
        for name, v in (("T_o", T_o), ("T_p", T_p)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"WindowDataset: {name} must be an int >= 1, got {v!r}")
        dt = metadata.dt if dt is None else float(dt)
        if not (np.isfinite(dt) and dt > 0):
            raise ValueError(f"WindowDataset: dt must be finite and > 0, got {dt}")
        pad_after = T_p - 1 if pad_after is None else pad_after
        if not isinstance(pad_after, int) or not 0 <= pad_after <= T_p - 1:
            raise ValueError(f"WindowDataset: pad_after must be an int in [0, T_p-1={T_p - 1}], got {pad_after!r}")
        cameras = list(metadata.cameras) if cameras is None else list(cameras)
        unknown = [c for c in cameras if c not in metadata.cameras]
        if unknown:
            raise ValueError(f"WindowDataset: cameras {unknown} not in the data set {list(metadata.cameras)}")
        if not episodes:
            raise ValueError("WindowDataset: no episodes")
        self.state_names = list(metadata.state_names) if state_names is None else list(state_names)
        self.aux_state_names = list(aux_state_names)
        for what, names in (("state_names", self.state_names), ("aux_state_names", self.aux_state_names)):
            unknown = [n for n in names if n not in metadata.state_names]
            if unknown:
                raise ValueError(f"WindowDataset: {what} {unknown} are not in the data set's state "
                                 f"entries {metadata.state_names}")
        state_columns = [metadata.state_names.index(n) for n in self.state_names]
        aux_columns = [metadata.state_names.index(n) for n in self.aux_state_names]

        self.metadata = metadata
        self.T_o, self.T_p, self.dt, self.pad_after = T_o, T_p, dt, pad_after
        self.cameras = cameras
        self.episodes: List[Episode] = []
        self._states: List[np.ndarray] = []  # per episode [N, D_s], the observed columns
        self._aux_states: List[np.ndarray] = []  # per episode [N, D_aux]; empty without aux names
        obs_offsets = (np.arange(T_o) - (T_o - 1)) * dt  # [T_o]: -(T_o-1)·dt … 0
        act_offsets = np.arange(T_p) * dt  # [T_p]: 0 … (T_p-1)·dt
        half = 0.5 * dt  # a query more than dt/2 past the last stamp is a padded row
        ep_ids, obs_rows, act_rows = [], [], []
        for e, ep in enumerate(episodes):
            ep.validate(metadata, where=f"episode {e}")
            self.episodes.append(ep)
            self._states.append(np.ascontiguousarray(ep.state[:, state_columns]))  # [N, D_s]
            if aux_columns:
                self._aux_states.append(np.ascontiguousarray(ep.state[:, aux_columns]))  # [N, D_aux]
            t = ep.timestamp  # [N]
            # Anchor i is usable if at most pad_after action rows fall past the last stamp.
            usable = t + (T_p - 1 - pad_after) * dt <= t[-1] + half  # [N] bool
            anchors = np.flatnonzero(usable)  # [M]
            obs_rows.append(nearest_indices(t, t[anchors, None] + obs_offsets[None, :]))  # [M, T_o]
            act_rows.append(nearest_indices(t, t[anchors, None] + act_offsets[None, :]))  # [M, T_p]
            ep_ids.append(np.full(len(anchors), e, dtype=np.int64))  # [M]
        self.episode_index = np.concatenate(ep_ids)  # [W]
        self.obs_index = np.concatenate(obs_rows)  # [W, T_o]
        self.action_index = np.concatenate(act_rows)  # [W, T_p]
        if len(self.episode_index) == 0:
            raise ValueError(
                f"WindowDataset: no usable windows (episodes shorter than T_p - pad_after = {T_p - pad_after} samples)"
            )

    def __len__(self) -> int:
        return int(self.episode_index.shape[0])

    def __getitem__(self, index: int) -> dict:
        e = int(self.episode_index[index])
        ep = self.episodes[e]
        oi = self.obs_index[index]  # [T_o]
        ai = self.action_index[index]  # [T_p]
        obs = {"state": torch.from_numpy(self._states[e][oi])}  # [T_o, D_s]
        if self.cameras:
            images = {}
            for cam in self.cameras:
                frames = torch.from_numpy(ep.images[cam][oi])  # [T_o, H, W, 3] uint8
                images[cam] = frames.permute(0, 3, 1, 2).float().div_(255.0)  # [T_o, 3, H, W]
            obs["images"] = images
        item = {"obs": obs, "action": torch.from_numpy(ep.action[ai])}  # action [T_p, D_a]
        if self._aux_states:
            item["aux_state"] = torch.from_numpy(self._aux_states[e][oi])  # [T_o, D_aux]
        return item

    def all_actions(self) -> np.ndarray:
        """Every action sample of every episode, [sum N, D_a] (for normaliser fitting)."""
        return np.concatenate([ep.action for ep in self.episodes], axis=0)

    def all_states(self) -> np.ndarray:
        """Every observed state sample of every episode, [sum N, D_s] (for normaliser fitting)."""
        return np.concatenate(self._states, axis=0)

    def all_aux_states(self) -> Optional[np.ndarray]:
        """Every auxiliary state sample, [sum N, D_aux]; None without ``aux_state_names``."""
        return np.concatenate(self._aux_states, axis=0) if self._aux_states else None
