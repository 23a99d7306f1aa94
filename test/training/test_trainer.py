"""`genpolicy train` end to end (claim 9), its --help, bit-exact resume, the CLI dispatcher."""
import argparse
import csv
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from genpolicy_ros import cli
from genpolicy_ros.core.checkpoint import load_model_dir
from genpolicy_ros.data.episodes import DatasetMetadata
from genpolicy_ros.training import TrainConfig, Trainer, cli_train
from genpolicy_ros.training.trainer import LOG_FILE, PLOT_FILE, TRAINER_STATE, list_checkpoints

REPO = Path(__file__).resolve().parents[2]


def _config_file(tmp_path, policy, **train):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"policy": policy, "train": {"warmup_steps": 5, **train}}))
    return str(path)


def _train(data, out, cfg, *extra):
    return cli.main(["train", "--data", str(data), "--out", str(out), "--config", cfg, "--device", "cpu",
                     "--no-progress", *extra])


def _log(out):
    with open(Path(out) / LOG_FILE, newline="") as fh:
        return [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(fh)]


def test_training_run_lowers_the_loss_and_writes_a_loadable_model(tmp_path, tiny_dataset, tiny_policy):
    out = tmp_path / "run"
    rc = _train(tiny_dataset, out, _config_file(tmp_path, tiny_policy), "--steps", "100", "--batch-size", "16",
                "--lr", "1e-3", "--log-every", "5", "--save-every", "50")
    assert rc == 0
    log = _log(out)
    assert [s for s, _ in log] == list(range(5, 101, 5))
    losses = np.array([loss for _, loss in log])
    k = max(1, len(losses) // 5)  # first and last 20 % of the logged losses
    first, last = losses[:k].mean(), losses[-k:].mean()
    assert last < 0.75 * first, f"loss did not fall: first 20 % mean {first:.4f}, last 20 % mean {last:.4f}"
    assert [s for s, _ in list_checkpoints(out)] == [50, 100]
    assert (out / PLOT_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The final model directory loads and produces a finite chunk of the right shape.
    policy = load_model_dir(out)
    assert policy.config.action.joint_names == ("j0", "j1") and policy.config.horizon.dt == 0.1
    chunk = policy.sample_chunk({"state": np.zeros((2, 2), np.float32)}, seed=0)
    assert chunk.shape == (8, 2) and np.all(np.isfinite(chunk)), chunk
    # The saved weights are the EMA weights, not the raw ones (they differ after training).
    raw = load_file(str(out / "checkpoints" / "step_000100" / TRAINER_STATE))
    ema = policy.state_dict()
    name = next(n for n in ema if n.startswith("network.") and ema[n].is_floating_point() and ema[n].numel() > 4)
    assert not torch.equal(raw["model." + name], ema[name]), "final model should hold EMA weights"
    doc = json.loads((out / "config.json").read_text())
    assert doc["metadata"]["train_step"] == 100 and doc["metadata"]["ema"] is True
    # A second run into the same directory needs --resume or --overwrite.
    assert _train(tiny_dataset, out, _config_file(tmp_path, tiny_policy), "--steps", "10") == 1


def test_resume_is_bit_exact(tmp_path, tiny_dataset, tiny_policy):
    cfg = _config_file(tmp_path, tiny_policy)
    common = ("--steps", "24", "--batch-size", "8", "--lr", "1e-3", "--log-every", "3", "--save-every", "0")
    assert _train(tiny_dataset, tmp_path / "a", cfg, *common) == 0
    assert _train(tiny_dataset, tmp_path / "b", cfg, *common, "--stop-after", "12") == 0
    assert not (tmp_path / "b" / "model.safetensors").exists(), "a stopped run has no final model yet"
    assert [s for s, _ in list_checkpoints(tmp_path / "b")] == [12]
    assert _train(tiny_dataset, tmp_path / "b", cfg, *common, "--resume") == 0

    a = load_file(str(tmp_path / "a" / "checkpoints" / "step_000024" / TRAINER_STATE))
    b = load_file(str(tmp_path / "b" / "checkpoints" / "step_000024" / TRAINER_STATE))
    assert set(a) == set(b)
    worst = {}
    for name in a:
        if name.startswith(("model.", "ema.", "optim.")) and a[name].is_floating_point():
            worst[name] = float((a[name].double() - b[name].double()).abs().max())
    assert max(worst.values()) <= 1e-6, f"largest difference {max(worst.items(), key=lambda kv: kv[1])}"
    n_equal = sum(v == 0.0 for v in worst.values())
    assert n_equal == len(worst), f"only {n_equal}/{len(worst)} tensors bit-identical"
    assert _log(tmp_path / "a") == _log(tmp_path / "b"), "loss history must continue identically"
    ea = load_model_dir(tmp_path / "a").state_dict()
    eb = load_model_dir(tmp_path / "b").state_dict()
    assert all(torch.equal(ea[k], eb[k]) for k in ea), "final EMA model dirs differ"


def _train_parser():
    parser = cli.build_parser(load_verbs=["train"])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["train"]


def test_train_help_documents_every_option(capsys):
    train = _train_parser()
    text = train.format_help()
    options = [a for a in train._actions if a.option_strings and a.dest != "help"]
    undocumented = [a.option_strings for a in options if not a.help or a.help == argparse.SUPPRESS]
    assert not undocumented, f"options without help text: {undocumented}"
    missing = [s for a in options for s in a.option_strings if s not in text]
    assert not missing, f"options absent from --help: {missing}"
    required = ["--data", "--bag", "--out", "--config", "--kind", "--network", "--steps", "--batch-size",
                "--lr", "--seed", "--resume", "--save-every", "--device", "--num-workers", "--T-o", "--T-p",
                "--T-a", "--stop-after", "--debug-dump-weights"]
    have = {s for a in options for s in a.option_strings}
    assert not set(required) - have, f"missing options {sorted(set(required) - have)}"
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--help"])
    assert exc.value.code == 0 and "--batch-size" in capsys.readouterr().out


def test_cli_verbs_each_load_a_module_with_its_options(capsys, tmp_path):
    import importlib

    verbs = {"demo", "collect", "convert", "train", "eval", "bench", "export", "replay", "node", "sim"}
    assert {v.name for v in cli.VERBS} == verbs
    for verb in cli.VERBS:
        module = importlib.import_module(verb.module)
        assert callable(module.add_arguments) and callable(module.run), verb.module
    # An unknown option is an error of that verb, not silently ignored.
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--out", str(tmp_path / "o"), "--no-such-option", "x"])
    assert exc.value.code == 2 and "unrecognized arguments: --no-such-option" in capsys.readouterr().err
    # --bag needs a real recording: a missing one is a clear error, not a crash.
    assert cli.main(["train", "--bag", str(tmp_path / "x.mcap"), "--out", str(tmp_path / "o")]) == 1
    assert "not a rosbag2 directory" in capsys.readouterr().err


def test_default_yaml_config_builds_valid_configs():
    file_cfg = cli_train.load_config_file(REPO / "config" / "train_default.yaml")
    meta = DatasetMetadata(joint_names=["a", "b"], state_names=["a", "b"], dt=0.05)
    args = _train_parser().parse_args(["--out", "x", "--T-a", "4", "--kind", "diffusion"])
    actions = np.array([[0.0, -1.0], [1.0, 1.0]], np.float32)
    pcfg = cli_train.policy_config_from(meta, actions, file_cfg["policy"], args)
    tcfg = cli_train.train_config_from(file_cfg["train"], args)
    assert pcfg.kind == "diffusion" and pcfg.horizon.T_a == 4 and pcfg.horizon.dt == 0.05
    assert pcfg.network.params["down_dims"] == [64, 128, 256]
    assert pcfg.action.lower_limits[0] < 0.0 and pcfg.action.upper_limits[0] > 1.0  # data range + margin
    assert tcfg.steps == 2000 and tcfg.ema.max_decay == 0.9999


class _SignalAt(torch.utils.data.Dataset):
    """Wraps a dataset; raises SIGINT in this process when item ``at`` is fetched."""

    def __init__(self, inner, at):
        self.inner, self.at, self.calls = inner, at, 0

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        self.calls += 1
        if self.calls == self.at:
            os.kill(os.getpid(), signal.SIGINT)
        return self.inner[i]


def _tiny_trainer_parts(data, policy_section, **train):
    from genpolicy_ros.core.policy import GenerativePolicy
    from genpolicy_ros.data.dataset import WindowDataset
    from genpolicy_ros.data.episodes import EpisodeDataset

    episodes = EpisodeDataset(data)
    args = _train_parser().parse_args(["--out", "x"])
    actions = np.concatenate([ep.action for ep in episodes])
    pcfg = cli_train.policy_config_from(episodes.metadata, actions, policy_section, args)
    windows = WindowDataset(episodes, T_o=2, T_p=8)
    return GenerativePolicy.from_config(pcfg), windows, TrainConfig(**{"warmup_steps": 1, **train})


def test_ctrl_c_stops_after_the_step_with_a_resumable_checkpoint(tmp_path, tiny_dataset, tiny_policy):
    policy, windows, tcfg = _tiny_trainer_parts(tiny_dataset, tiny_policy, steps=50, batch_size=4,
                                                save_every=0, log_every=1)
    before = signal.getsignal(signal.SIGINT)
    # The signal arrives while batch 3 (items 9..12) is being assembled.
    result = Trainer(policy, _SignalAt(windows, at=10), tcfg, tmp_path / "o", progress=False).train()
    assert signal.getsignal(signal.SIGINT) is before, "the previous SIGINT handler must be restored"
    assert result.interrupted and not result.finished and result.step == 3, result
    assert [s for s, _ in list_checkpoints(tmp_path / "o")] == [3]
    resumed = Trainer(policy, windows, tcfg, tmp_path / "o", resume=True, progress=False)
    assert resumed.step == 3 and resumed.resumed_from.name == "step_000003"


def test_non_finite_loss_stops_with_a_clear_error(tmp_path, tiny_dataset, tiny_policy):
    policy, windows, tcfg = _tiny_trainer_parts(tiny_dataset, tiny_policy, steps=10, batch_size=4)
    trainer = Trainer(policy, windows, tcfg, tmp_path / "o", progress=False)
    with torch.no_grad():
        next(policy.network.parameters()).fill_(float("nan"))
    with pytest.raises(FloatingPointError, match=r"training loss is nan at step 0"):
        trainer.train()


def test_training_with_an_auxiliary_state_entry_observes_only_the_named_state(tmp_path, tiny_policy):
    from genpolicy_ros.data.episodes import Episode, write_dataset

    episodes = []
    for phase in (0.0, 1.0, 2.0):
        t = np.arange(31) * 0.1  # [N+1]
        q = np.stack([np.sin(t + phase), 0.5 * np.cos(2 * t + phase)], axis=1).astype(np.float32)  # [N+1, 2]
        hidden = q[:-1, :1] * 2.0 + 1.0  # [N, 1] a column the policy must not observe
        episodes.append(Episode(t[:-1], q[1:], np.concatenate([q[:-1], hidden], axis=1)))
    data = tmp_path / "data"
    write_dataset(data, DatasetMetadata(joint_names=["j0", "j1"], state_names=["j0", "j1", "hid"], dt=0.1), episodes)
    policy = {**tiny_policy, "observation": {"state_names": ["j0", "j1"]},
              "auxiliary": {"state_names": ["hid"], "weight": 0.5}}
    out = tmp_path / "run"
    assert _train(data, out, _config_file(tmp_path, policy), "--steps", "20", "--batch-size", "8",
                  "--save-every", "0") == 0
    model = load_model_dir(out)
    assert model.config.observation.state_names == ("j0", "j1")
    assert model.config.auxiliary.state_names == ("hid",) and model.config.auxiliary.weight == 0.5
    # The hidden column's range was fitted (1 ± 2), and the model runs on the observed state alone.
    assert model.aux_normalizer.min.item() == pytest.approx(-1.0, abs=0.05)
    chunk = model.sample_chunk({"state": np.zeros((2, 2), np.float32)}, seed=0)
    assert chunk.shape == (8, 2) and np.all(np.isfinite(chunk))
    estimate = model.predict_aux_state({"state": torch.zeros(1, 2, 2)})
    assert estimate.shape == (1, 2, 1) and torch.isfinite(estimate).all()


def test_a_model_declares_the_inputs_it_observes_and_only_leading_entries():
    inputs = {"cube": {"type": "pose", "names": ["cx", "cy", "cz"]}, "target": {"type": "point", "names": ["tx"]}}
    observed = cli_train.observed_state_inputs(inputs, ["j", "cx", "cy"])
    assert observed == {"cube": {"type": "pose", "names": ["cx", "cy"]}}
    assert cli_train.observed_state_inputs(inputs, ["j"]) == {}
    with pytest.raises(ValueError, match="must be its first ones"):
        cli_train.observed_state_inputs(inputs, ["cy", "cz"])  # would map cy to x
    meta = DatasetMetadata(joint_names=["j"], state_names=["j", "cx", "cy", "cz", "tx"], dt=0.1, state_inputs=inputs)
    args = argparse.Namespace(T_o=None, T_p=None, T_a=None, dt=None, kind=None, network=None, seed=None)
    cfg = cli_train.policy_config_from(meta, np.zeros((4, 1)), {"observation": {"state_names": ["j", "tx"]}}, args)
    assert cfg.observation.state_inputs == {"target": {"type": "point", "names": ["tx"]}}


def test_resume_fills_in_the_inputs_an_older_checkpoint_did_not_declare():
    inputs = {"cube": {"type": "pose", "names": ["cx", "cy"]}}
    meta = DatasetMetadata(joint_names=["j"], state_names=["j", "cx", "cy"], dt=0.1, state_inputs=inputs)
    args = argparse.Namespace(T_o=None, T_p=None, T_a=None, dt=None, kind=None, network=None, seed=None)
    saved = cli_train.policy_config_from(meta, np.zeros((4, 1)), {}, args).to_dict()
    declared = cli_train.resumed_policy_config(saved, meta)
    assert declared.observation.state_inputs == inputs
    saved["observation"]["state_inputs"] = {}  # as a run started before data sets recorded their inputs
    assert cli_train.resumed_policy_config(saved, meta).observation.state_inputs == inputs
    assert cli_train.resumed_policy_config(saved, meta).network == declared.network
    plain = DatasetMetadata(joint_names=["j"], state_names=["j", "cx", "cy"], dt=0.1)
    assert cli_train.resumed_policy_config(saved, plain).observation.state_inputs == {}
