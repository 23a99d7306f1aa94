"""The training loop: AdamW + warm-up/cosine LR + EMA, checkpoints, bit-exact resume.

Output directory (only rank 0 writes)::

    OUT/
      config.json, model.safetensors     final model directory (EMA weights), written
                                         by core.checkpoint.save_model_dir at the end
      train_log.csv                      step, epoch, loss, lr, ema_decay, elapsed_s
      loss.png                           loss curve (matplotlib, Agg canvas)
      checkpoints/step_XXXXXX/           every ``save_every`` steps and at the end:
        config.json, model.safetensors   a complete model directory (EMA weights)
        trainer_state.safetensors        raw weights, optimiser state, RNG states, EMA count
        trainer_state.json               step, configs, optimiser hyper-parameters,
                                         non-tensor optimiser entries (written last: a
                                         checkpoint without it is incomplete and ignored)

Checkpoint layout and state (de)serialisation: :mod:`.checkpoint_state`; the CSV log and
the loss plot: :mod:`.train_log`. Nothing is pickled: tensors go to safetensors, everything
else to JSON. ``resume``
continues from the newest complete checkpoint: weights, optimiser moments, EMA, the
torch/numpy/Python RNG states of every rank and the data order (a pure function of
seed and step, see :class:`~genpolicy_ros.training.distributed.StepBatchSampler`) are
restored, and the learning rate is recomputed from the step, so on the same machine a
run of N steps and a run of N/2 + resumed N/2 end with identical weights.

One optimiser step ``s`` (0-based)::

    lr ← base_lr · m(s)                         (schedule.lr_multiplier)
    loss, info ← policy.loss(batch_s)           (through DDP when distributed)
    AdamW step (+ optional grad-norm clipping)
    EMA update                                   (ema.EMA)
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch
from safetensors.torch import load_file as _st_load_file
from safetensors.torch import save_file as _st_save_file
from torch.utils.data import DataLoader

from .checkpoint_state import (  # noqa: F401  (re-exported: the names' historical home)
    CHECKPOINT_DIR,
    STATE_FORMAT_VERSION,
    TRAINER_STATE,
    TRAINER_STATE_JSON,
    atomic_json,
    checkpoint_name,
    flatten_optimizer_state,
    host_rng_state,
    latest_checkpoint,
    list_checkpoints,
    read_trainer_state_json,
    set_host_rng_state,
    unflatten_optimizer_state,
)
from .config import TrainConfig
from .distributed import DistInfo, StepBatchSampler, all_gather_tensor, all_reduce_mean, barrier, wrap
from .ema import EMA
from .schedule import WarmupCosineSchedule
from .train_log import LOG_FILE, PLOT_FILE, append_row, plot_losses, read_losses, restart_log  # noqa: F401


@dataclass
class TrainResult:
    out_dir: Path
    step: int  # optimiser steps done
    finished: bool  # reached config.steps (the final model dir was written)
    history: List[Tuple[int, float]] = field(default_factory=list)  # (step, logged mean loss)
    checkpoint: Optional[Path] = None
    interrupted: bool = False  # stopped early by SIGINT/SIGTERM


# --------------------------------------------------------------------------- helpers
def to_device(batch, device: torch.device):
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


class _StopRequest:
    """Turns SIGINT/SIGTERM into a flag checked between steps; a second signal aborts."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def __enter__(self) -> "_StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(f"\ngenpolicy train: {signal.Signals(signum).name}: stopping after this step with a "
              "checkpoint (again to abort)", file=sys.stderr)

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


# --------------------------------------------------------------------------- trainer
class Trainer:
    """Trains ``policy`` (a ``GenerativePolicy`` or anything with ``loss(batch)``) on ``dataset``.

    Args:
        policy: the model; its normalisers are fitted from ``dataset`` on a fresh start
            (when it has ``fit_normalizers`` and the dataset ``all_actions``).
        dataset: a map-style dataset of batch-layout dicts (e.g. ``WindowDataset``).
        config: :class:`TrainConfig`.
        out_dir: output directory (see module docstring).
        info: this rank (``distributed.init_from_env``); default single process.
        resume: continue from the newest complete checkpoint in ``out_dir`` if any.
        progress: show a tqdm bar; default only on rank 0 when stderr is a terminal.
        dump_weights_dir: debug: each rank writes its final raw and EMA weights to
            ``weights_rank<r>.safetensors`` there (to compare ranks).
        extra_metadata: JSON-able dict stored in the model directories' config.json.
    """

    def __init__(self, policy, dataset, config: TrainConfig, out_dir, *, info: Optional[DistInfo] = None,
                 resume: bool = False, progress: Optional[bool] = None, dump_weights_dir=None,
                 extra_metadata: Optional[dict] = None):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"Trainer: config must be a TrainConfig, got {type(config).__name__}")
        self.config = config
        self.info = info or DistInfo(device=torch.device("cpu"))
        self.out_dir = Path(out_dir)
        self.policy = policy.to(self.info.device)
        self.dataset = dataset
        self.dump_weights_dir = Path(dump_weights_dir) if dump_weights_dir else None
        self.extra_metadata = dict(extra_metadata or {})
        if progress is None:
            progress = self.info.is_main and sys.stderr.isatty()
        self.progress = bool(progress) and self.info.is_main
        self.step = 0
        self.history: List[Tuple[int, float]] = []
        self.elapsed_before = 0.0  # seconds of training before a resume

        c = config
        self.optimizer = torch.optim.AdamW(self.policy.parameters(), lr=c.lr, betas=c.betas,
                                           weight_decay=c.weight_decay)
        self.schedule = WarmupCosineSchedule(c.lr, c.steps, c.warmup_steps, c.min_lr_ratio)
        self.ema = EMA(self.policy, c.ema) if c.ema.enabled else None

        self.resumed_from: Optional[Path] = None
        ckpt = latest_checkpoint(self.out_dir) if resume else None
        if ckpt is not None:
            self._load_checkpoint(ckpt)
            self.resumed_from = ckpt
        else:
            self._fresh_start()
        self.module = wrap(self.policy, self.info)  # DDP broadcasts rank 0's weights here

    # ------------------------------------------------------------------ set-up
    def _fresh_start(self) -> None:
        if hasattr(self.policy, "fit_normalizers") and hasattr(self.dataset, "all_actions"):
            aux = self.dataset.all_aux_states() if hasattr(self.dataset, "all_aux_states") else None
            self.policy.fit_normalizers(self.dataset.all_actions(), self.dataset.all_states(), aux)
        if self.ema is not None:
            self.ema = EMA(self.policy, self.config.ema)  # start the average from fitted normalisers
        seed = self.config.seed + self.info.rank  # different loss noise on every rank
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)

    def _load_checkpoint(self, ckpt: Path) -> None:
        meta = read_trainer_state_json(ckpt)
        tensors = _st_load_file(str(ckpt / TRAINER_STATE), device="cpu")
        weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        self.policy.load_state_dict(weights, strict=True)
        opt_state = unflatten_optimizer_state(tensors, meta["optimizer"])
        self.optimizer.load_state_dict(opt_state)
        if self.ema is not None:
            self.ema = EMA(self.policy, self.config.ema)
            ema_weights = {k[len("ema."):]: v for k, v in tensors.items() if k.startswith("ema.model.")}
            if ema_weights:
                ema_weights["num_updates"] = tensors["ema.num_updates"]
                self.ema.load_state_dict(ema_weights)
            else:  # the checkpoint was written without EMA: start the average here
                self.ema.num_updates = int(meta["step"])
        self.step = int(meta["step"])
        self.elapsed_before = float(meta.get("elapsed_s", 0.0))
        r = self.info.rank
        if f"rng.torch.{r}" in tensors:
            torch.set_rng_state(tensors[f"rng.torch.{r}"])
            set_host_rng_state(tensors[f"rng.host_int.{r}"], tensors[f"rng.host_float.{r}"])
            if self.info.device.type == "cuda" and f"rng.cuda.{r}" in tensors:
                torch.cuda.set_rng_state(tensors[f"rng.cuda.{r}"], device=self.info.device)
        else:  # resumed with more processes than were saved: a fresh, rank-dependent seed
            seed = self.config.seed + r + 1000003 * self.step
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            random.seed(seed)
        self.history = [(s, loss) for s, loss in read_losses(self.out_dir) if s <= self.step]

    # ------------------------------------------------------------------ loop
    def train(self, stop_after: Optional[int] = None) -> TrainResult:
        """Run until ``config.steps`` (or ``stop_after`` steps in total, with a checkpoint).

        SIGINT/SIGTERM (Ctrl-C) finishes the current step, writes a checkpoint and returns
        (``finished=False``; continue with ``resume``); a second signal aborts at once.
        """
        c = self.config
        target = c.steps if stop_after is None else min(int(stop_after), c.steps)
        if self.info.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            restart_log(self.out_dir, self.step if self.resumed_from is not None else None)
        sampler = StepBatchSampler(len(self.dataset), c.batch_size, c.seed, self.info, start_step=self.step)
        loader = DataLoader(
            self.dataset,
            batch_sampler=sampler,
            num_workers=c.num_workers,
            pin_memory=self.info.device.type == "cuda",
            # A private generator: creating the iterator must not consume the global RNG.
            generator=torch.Generator().manual_seed(c.seed),
        )
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=c.steps, initial=self.step, desc="train", dynamic_ncols=True, file=sys.stderr)
        self.module.train()
        t_start = time.monotonic()
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.info.device)  # [] running sum
        loss_count = 0
        last_ckpt = None
        stop = False
        batches = iter(loader)
        try:
            with _StopRequest() as stop_request:
                while self.step < target:
                    loss, lr, decay = self._train_step(next(batches))
                    loss_sum += loss
                    loss_count += 1
                    if self.step % c.log_every == 0 or self.step == target:
                        mean = all_reduce_mean(float(loss_sum) / loss_count, self.info)
                        loss_sum.zero_()
                        loss_count = 0
                        elapsed = self.elapsed_before + time.monotonic() - t_start
                        self._log(self.step, sampler.epoch_of(self.step - 1), mean, lr, decay, elapsed)
                        if bar is not None:
                            bar.set_postfix(loss=f"{mean:.4g}", lr=f"{lr:.2e}")
                    if bar is not None:
                        bar.update(1)
                    stop = self._agreed_stop(stop_request.requested)
                    if (c.save_every and self.step % c.save_every == 0) or self.step == target or stop:
                        last_ckpt = self.save_checkpoint(self.elapsed_before + time.monotonic() - t_start)
                    if stop:
                        break
        finally:
            if bar is not None:
                bar.close()
            del batches  # shuts data-loader workers down
        finished = self.step >= c.steps
        if finished and self.info.is_main:
            self._save_final()
        if self.dump_weights_dir is not None:
            self._dump_weights()
        barrier(self.info)
        return TrainResult(self.out_dir, self.step, finished, list(self.history), last_ckpt, interrupted=stop)

    def _train_step(self, batch) -> Tuple[torch.Tensor, float, float]:
        """One optimiser step → (detached float64 loss [], lr used, EMA decay used)."""
        batch = to_device(batch, self.info.device)
        lr = self.schedule.apply(self.optimizer, self.step)
        loss, _info = self.module(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss is {float(loss.detach())} at step {self.step} (lr {lr:.3g}); "
                "check the data for outliers or lower --lr"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.config.grad_clip_norm)
        self.optimizer.step()
        decay = self.ema.update(self.policy) if self.ema is not None else 0.0
        self.step += 1
        return loss.detach().to(torch.float64), lr, decay

    def _agreed_stop(self, requested: bool) -> bool:
        """Whether to stop now; under torchrun all ranks decide together at log steps."""
        if not self.info.enabled:
            return requested
        if self.step % self.config.log_every != 0:
            return False
        return all_reduce_mean(1.0 if requested else 0.0, self.info) > 0.0

    # ------------------------------------------------------------------ logging
    def _log(self, step, epoch, loss, lr, decay, elapsed) -> None:
        self.history.append((step, loss))
        if self.info.is_main:
            append_row(self.out_dir, [step, epoch, repr(loss), repr(lr), repr(decay), f"{elapsed:.3f}"])

    # ------------------------------------------------------------------ saving
    def _inference_model(self):
        return self.ema.model if self.ema is not None else self.policy

    def _metadata(self) -> dict:
        return {**self.extra_metadata, "train_step": self.step, "train_config": self.config.to_dict(),
                "ema": self.ema is not None}

    def save_checkpoint(self, elapsed_s: float = 0.0) -> Optional[Path]:
        """Write ``OUT/checkpoints/step_XXXXXX`` (rank 0; all ranks must call: RNG gather)."""
        from genpolicy_ros.core.checkpoint import save_model_dir

        rng = {"torch": torch.get_rng_state()}  # [S] uint8
        rng["host_int"], rng["host_float"] = host_rng_state()
        if self.info.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.info.device)
        gathered = {k: all_gather_tensor(v, self.info) for k, v in rng.items()}  # k -> [rank tensors]
        if not self.info.is_main:
            return None
        tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in self.policy.state_dict().items()}
        opt_tensors, opt_meta = flatten_optimizer_state(self.optimizer.state_dict())
        tensors.update(opt_tensors)
        if self.ema is not None:
            tensors.update({f"ema.{k}": v.detach().cpu().contiguous().clone()
                            for k, v in self.ema.state_dict().items()})
        for kind, per_rank in gathered.items():
            for r, t in enumerate(per_rank):
                tensors[f"rng.{kind}.{r}"] = t.contiguous().clone()
        root = self.out_dir / CHECKPOINT_DIR
        root.mkdir(parents=True, exist_ok=True)
        final = root / checkpoint_name(self.step)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp_{final.name}_", dir=root))
        try:
            save_model_dir(self._inference_model(), tmp, extra_metadata=self._metadata())
            _st_save_file(tensors, str(tmp / TRAINER_STATE), metadata={"format": "pt"})
            policy_cfg = getattr(self.policy, "config", None)
            atomic_json(tmp / TRAINER_STATE_JSON, {
                "format_version": STATE_FORMAT_VERSION,
                "step": self.step,
                "world_size": self.info.world_size,
                "elapsed_s": elapsed_s,
                "train_config": self.config.to_dict(),
                "policy_config": policy_cfg.to_dict() if hasattr(policy_cfg, "to_dict") else None,
                "optimizer": opt_meta,
                "extra_metadata": self.extra_metadata,
            })
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._prune_checkpoints()
        if self.history:
            plot_losses(self.history, self.out_dir / PLOT_FILE)
        return final

    def _prune_checkpoints(self) -> None:
        keep = self.config.keep_checkpoints
        found = list_checkpoints(self.out_dir)
        if keep and len(found) > keep:
            for _, path in found[:-keep]:
                shutil.rmtree(path, ignore_errors=True)

    def _save_final(self) -> None:
        from genpolicy_ros.core.checkpoint import save_model_dir

        save_model_dir(self._inference_model(), self.out_dir, extra_metadata=self._metadata())
        plot_losses(self.history, self.out_dir / PLOT_FILE)

    def _dump_weights(self) -> None:
        self.dump_weights_dir.mkdir(parents=True, exist_ok=True)
        tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in self.policy.state_dict().items()}
        if self.ema is not None:
            tensors.update({f"ema.{k}": v.detach().cpu().contiguous().clone()
                            for k, v in self.ema.model.state_dict().items()})
        _st_save_file(tensors, str(self.dump_weights_dir / f"weights_rank{self.info.rank}.safetensors"))
