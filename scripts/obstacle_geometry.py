"""Geometry check of the reach2d obstacle variant (numpy only, then the MuJoCo env).

1. Kinematic sweep over a grid of targets (radius × heading of `obstacle_task()`): the
   fingertip's clearance to the post along the expert's commanded path of each mode, and
   along *mixtures* of the two modes' joint trajectories, q_c(t) = w·q_up(t) + (1−w)·q_down(t)
   with w = (1 + c)/2 — c = 1 is a committed expert, c = 0 the plain average (the stretched
   arm swinging to the target heading without folding), c in between a partial commitment —
   and the time of the first contact. Also the same with the plain joint-space expert of the
   default task (one 1.6 s profile).
2. The expert's commanded joint velocity and acceleration (the policy node's safety filter
   caps them at 2 rad/s and 20 rad/s² by default), from the nominal start and from starts
   2σ of start noise off.
3. The same commands executed in the MuJoCo env (position-controlled, start noise): success,
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
    times = np.linspace(0.0, task.episode_s, 601)
    rows, hits = {}, {}
    for c in COMMITMENTS:
        clearances, first = [], []
        for r in np.linspace(*task.target_radius, 10):
            for h in np.linspace(*task.target_heading, 9):
                target = np.array([r * math.cos(h), r * math.sin(h)])
                start = np.array([h + task.start_offset_rad, 0.0])
                q = mixture_commands(start, target, c, times, branch)
                cl = fingertip_clearance(q, obstacle_position(target, task), task)
                clearances.append(cl.min())
                first.append(times[np.argmax(cl < 0)] if (cl < 0).any() else math.inf)
        rows[c], hits[c] = np.asarray(clearances), np.asarray(first)
    return rows, hits


def envelope(task, branch):
    """Max |velocity| and |acceleration| of the expert's commands over the target grid."""
    t = np.linspace(0.0, task.episode_s, 3001)
    out = {}
    n = 2 * task.start_noise_rad  # 2σ
    for noise in ((0.0, 0.0), (n, n), (-n, -n), (n, -n), (-n, n)):
        vmax = amax = 0.0
        for r in np.linspace(*task.target_radius, 10):
            for h in np.linspace(*task.target_heading, 9):
                target = np.array([r * math.cos(h), r * math.sin(h)])
                start = np.array([h + task.start_offset_rad, 0.0]) + np.asarray(noise)
                for sign in (+1, -1):
                    q = ReachExpert(start, target, sign, **branch).action(t)
                    v = np.gradient(q, t, axis=0)
                    vmax = max(vmax, float(np.abs(v).max()))
                    amax = max(amax, float(np.abs(np.gradient(v, t, axis=0)).max()))
        out[noise] = (vmax, amax)
    return out


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
        f"obstacle_task(): post r={task.obstacle_size} m centred {task.obstacle_distance} m from the base (inner "
        f"edge for the fingertip probe's centre {task.obstacle_distance - task.obstacle_size - 0.008:.3f} m), "
        f"{task.obstacle_heading_fraction * task.start_offset_rad:.2f} rad off the target line; start "
        f"{task.start_offset_rad} rad beside the target; fingertip probe 0.008 m; targets {task.target_radius} m "
        f"x {task.target_heading} rad, start noise {task.start_noise_rad} rad; expert: modes part at "
        f"{task.expert_branch_s} s, shoulder swing: {task.expert_swing_ramp_s} s ramp to {task.expert_swing_velocity} "
        f"rad/s, elbow fold: {task.expert_fold_ramp_s} s ramp to {task.expert_fold_velocity} rad/s"
    )
    for branch, label in (({}, "plain joint-space expert (one 1.6 s profile)"), (expert_branch(task), "the expert")):
        print(f"\nkinematic sweep, {label} (90 targets x 2 modes; clearance < 0 = collision):")
        rows, hits = kinematic_sweep(task, branch)
        for c, cl in rows.items():
            hit = hits[c][np.isfinite(hits[c])]
            when = f", first contact {hit.min():.2f}-{hit.max():.2f} s" if hit.size else ""
            print(
                f"  c={c:.1f}: min clearance {1000 * cl.min():6.1f} mm, max {1000 * cl.max():6.1f} mm, "
                f"colliding {100 * np.mean(cl < 0):5.1f} %{when}"
            )
    print("\nthe expert's commands, max |velocity| (rad/s) and |acceleration| (rad/s^2) over the grid, both modes:")
    for noise, (vmax, amax) in envelope(task, expert_branch(task)).items():
        print(f"  start offset (shoulder, elbow) {noise}: {vmax:.2f} rad/s, {amax:.1f} rad/s^2")
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
