"""Geometry check of the reach2d obstacle variant (numpy only, then the MuJoCo env).

1. Kinematic sweep over a grid of targets (radius × heading of `obstacle_task()`): the
   fingertip's clearance to the post along the expert's commanded path of each mode, and
   along *mixtures* of the two modes' joint trajectories, q_c(t) = w·q_up(t) + (1−w)·q_down(t)
   with w = (1 + c)/2 — c = 1 is a committed expert, c = 0 the plain average (the stretched
   arm swinging to the target heading without folding), c in between a partial commitment.
   Also the same with the plain joint-space expert of the default task (no late branch).
2. The same commands executed in the MuJoCo env (position-controlled, start noise): success,
   collision rate, final distance.

    python scripts/obstacle_geometry.py
"""
import math

import numpy as np

from genpolicy_ros.sim.expert import ReachExpert
from genpolicy_ros.sim.offline import expert_branch
from genpolicy_ros.sim.reach_env import ReachEnv, fingertip_clearance, obstacle_position, obstacle_task

COMMITMENTS = (1.0, 0.7, 0.5, 0.3, 0.1, 0.0)


def mixture_commands(start_q, target, c, times, branch):
    up = ReachExpert(start_q, target, +1, **branch)
    down = ReachExpert(start_q, target, -1, **branch)
    w = (1.0 + c) / 2.0
    return w * up.action(times) + (1.0 - w) * down.action(times)  # [N, 2]


def kinematic_sweep(task, branch):
    times = np.linspace(0.0, 1.6, 401)
    rows = {}
    for c in COMMITMENTS:
        clearances = []
        for r in np.linspace(*task.target_radius, 10):
            for h in np.linspace(*task.target_heading, 9):
                target = np.array([r * math.cos(h), r * math.sin(h)])
                start = np.array([h + task.start_offset_rad, 0.0])
                q = mixture_commands(start, target, c, times, branch)
                clearances.append(fingertip_clearance(q, obstacle_position(target, task), task).min())
        rows[c] = np.asarray(clearances)
    return rows


def simulated(task, episodes=50, dt=0.05):
    env = ReachEnv(task)
    steps = int(round(task.episode_s / dt))
    out = {}
    for c in COMMITMENTS:
        results = []
        for ep in range(episodes):
            obs = env.reset(seed=5000 + ep)
            start, target = obs.joint_positions[:2].copy(), env.target.copy()
            for _ in range(steps):
                command = mixture_commands(start, target, c, np.array(obs.time_s + dt), expert_branch(task))
                obs = env.step(command, dt)
            results.append(env.evaluate())
        out[c] = results
    env.close()
    return out


def main():
    task = obstacle_task()
    print(
        f"obstacle_task(): post r={task.obstacle_size} m at {task.obstacle_distance} m, "
        f"{task.obstacle_heading_fraction * task.start_offset_rad:.2f} rad off the target line; start "
        f"{task.start_offset_rad} rad beside the target; fingertip probe 0.008 m; targets {task.target_radius} m "
        f"x {task.target_heading} rad; expert: common swing 1.6 s, branch at {task.expert_branch_s} s, fold "
        f"{task.expert_branch_move_s} s"
    )
    for branch, label in (({}, "plain joint-space expert (one 1.6 s profile)"), (expert_branch(task), "the expert")):
        print(f"\nkinematic sweep, {label} (90 targets x 2 modes; clearance < 0 = collision):")
        for c, cl in kinematic_sweep(task, branch).items():
            print(
                f"  c={c:.1f}: min clearance {1000 * cl.min():6.1f} mm, max {1000 * cl.max():6.1f} mm, "
                f"colliding {100 * np.mean(cl < 0):5.1f} %"
            )
    print("\nMuJoCo env, 50 episodes each (start noise on), commands = mixture of the two modes:")
    for c, results in simulated(task).items():
        print(
            f"  c={c:.1f}: success {np.mean([r['success'] for r in results]):.2f}, collided "
            f"{np.mean([r['collided'] for r in results]):.2f}, min clearance "
            f"{1000 * min(r['min_clearance'] for r in results):6.1f} mm, mean final distance "
            f"{1000 * np.mean([r['final_distance'] for r in results]):5.1f} mm"
        )


if __name__ == "__main__":
    main()
