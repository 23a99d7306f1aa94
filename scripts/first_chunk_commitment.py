"""How strongly does a reach2d policy commit to one mode in its first chunk?

From the symmetric start (stretched arm pointing at the target, no start noise) the two
modes are mirror images, so a policy that averages them bends the elbow little. The
number printed is |elbow| at the last row of the first chunk divided by |elbow| of the
inverse-kinematics goal (the scripted expert reaches 0.5 at that instant: row 15 of
T_p = 16 at dt = 0.05 s is half-way through its 1.6 s minimum-jerk reach).

    python scripts/first_chunk_commitment.py models/reach_flow models/reach_ddim models/reach_mse
"""
import sys

import numpy as np
import torch

from genpolicy_ros.core.checkpoint import load_model_dir
from genpolicy_ros.sim.offline import reach_state
from genpolicy_ros.sim.reach_env import ReachEnv, ReachTaskConfig, inverse_kinematics


def commitment(model_dir: str, starts: int = 50) -> np.ndarray:
    policy = load_model_dir(model_dir).eval()
    env = ReachEnv(ReachTaskConfig(start_noise_rad=0.0))
    last = policy.config.horizon.T_p - 1
    ratios = []
    for s in range(starts):
        obs = env.reset(seed=700 + s)
        history = np.stack([reach_state(obs)] * policy.config.horizon.T_o).astype(np.float32)  # [T_o, 4]
        chunk = policy.sample_chunk({"state": history}, seed=s)  # [T_p, 2]
        ratios.append(abs(chunk[last, 1]) / abs(inverse_kinematics(env.target, 1)[1]))
    env.close()
    return np.asarray(ratios)


def main(argv) -> int:
    torch.set_num_threads(1)
    for model_dir in argv or ["models/reach_flow", "models/reach_mse"]:
        r = commitment(model_dir)
        print(f"{model_dir}: first-chunk elbow / goal elbow: median {np.median(r):.2f}, p10 {np.percentile(r, 10):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
