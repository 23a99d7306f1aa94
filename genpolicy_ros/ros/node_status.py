"""The numbers behind the policy node's ``/diagnostics`` (ros/diagnostics.py turns them into
a message with a level).

:class:`StatusReporter` reads the engine, the inputs, the output and the command loop and
returns one flat dict per report: totals, and counts/rates *over the window since the
previous report* (so a level recovers once a fault is gone).
"""
from __future__ import annotations

import time
from typing import Any, Dict, Optional


class StatusReporter:
    """Builds the stats dict of one /diagnostics report from the node's parts."""

    def __init__(self) -> None:
        self._prev: Dict[str, float] = {}
        self._prev_time = time.monotonic()

    def restart_window(self) -> None:
        self._prev, self._prev_time = {}, time.monotonic()

    def report(self, *, state: str, engine, inputs, output, loop, worker, params, config, model_dir: str,
               sampler_resolved: str, ros_now: float, extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        stats: Dict[str, Any] = {"state": state}
        if engine is None:
            return stats
        for _ in range(3):  # counters may change under our feet (tick thread): retry
            try:
                es = engine.stats()
                break
            except RuntimeError:
                continue
        else:
            return stats
        active = output is not None and output.is_activated
        now_steady = time.monotonic()
        elapsed = max(1e-6, now_steady - self._prev_time)
        safety = es["safety"]
        safety_counts = safety["status"]
        rejected_total = sum(inputs.rejected.values()) if inputs is not None else 0
        totals = {
            "published": output.published if output is not None else 0,
            "chunks": es["chunks"],
            "holds": es["holds"] - safety_counts.get("hold_paused", 0),
            "drops": es["scheduler"]["rows_dropped"],
            "non_finite": es["nonfinite_chunks"] + (output.nonfinite_blocked if output is not None else 0),
            "generation_errors": es["worker_errors"],
            "rejected_messages": rejected_total,
        }
        delta = {k: v - self._prev.get(k, 0) for k, v in totals.items()}
        self._prev, self._prev_time = totals, now_steady
        loop_stats = loop.stats() if loop is not None else {}
        result = engine.last_result
        hold_reason = ""
        if active and result is not None and result.status.is_hold and not es["paused"]:
            hold_reason = "; ".join(result.reasons) or result.status.value
        chunk_meta = output.last_chunk_meta if output is not None else {}
        worker_info = worker.info if worker is not None else {}
        stats.update({
            "backend": worker_info.get("backend"),
            "device": worker_info.get("device"),
            "generation_path": chunk_meta.get("path") or worker_info.get("path"),
            "generation_active_path": str(getattr(worker, "active_path", "") or ""),
            "precision": worker_info.get("precision"),
            "emulate_latency_ms": worker_info.get("emulate_latency_ms"),
            "model": model_dir,
            "sampler": params.sampler if params else None,
            "sampler_resolved": sampler_resolved,
            "control_rate_hz": params.control_rate_hz if params else None,
            "executor_rate_hz": delta["published"] / elapsed if active else None,
            "generation_rate_hz": delta["chunks"] / elapsed,
            "latency_p50_ms": es["latency_p50_ms"], "latency_p95_ms": es["latency_p95_ms"],
            "latency_max_ms": es["latency_max_ms"],
            # A chunk must arrive before the executed part of the previous one runs out.
            "latency_budget_ms": 1e3 * es["scheduler"]["action_horizon"] * config.horizon.dt,
            "holds": delta["holds"] if active else 0, "hold_reason": hold_reason,
            "paused": es["paused"], "drops": delta["drops"], "non_finite": delta["non_finite"],
            "tracking_fault": bool(safety.get("tracking_fault")),
            "tracking_error_max": safety.get("tracking_error_max"),
            "tracking_faults_total": safety.get("tracking_faults"),
            "generation_errors": delta["generation_errors"], "rejected_messages": delta["rejected_messages"],
            "rejected_total": rejected_total,
            "last_rejected_reason": inputs.last_rejected_reason if inputs is not None else "",
            "rejected_by_source": dict(inputs.rejected) if inputs is not None else {},
            "rejected_by_reason": dict(inputs.reasons) if inputs is not None else {},
            "ignored_other_transport": inputs.ignored_transport if inputs is not None else 0,
            "observation_timeout_s": params.observation_timeout_s if params else None,
            "commands_published": totals["published"], "chunks_total": es["chunks"],
            "last_error": es["last_error"] or "", "stale_reason": es["stale_reason"],
            "chunk_blending": es["scheduler"]["blending"], "action_horizon": es["scheduler"]["action_horizon"],
            "chunk_sampler": chunk_meta.get("sampler") or (config.default_sampler if chunk_meta else None),
            "chunk_num_steps": chunk_meta.get("num_steps"),
            "executor_lateness_p50_ms": loop_stats.get("lateness_p50_ms"),
            "executor_lateness_p99_ms": loop_stats.get("lateness_p99_ms"),
            "executor_lateness_max_ms": loop_stats.get("lateness_max_ms"),
            "executor_missed_ticks": loop_stats.get("missed_ticks"),
            "observation_resets": es["buffer"]["resets"],
            "observations_dropped_stale": es["buffer"]["add"].get("stamp_backwards", 0),
        })
        if extra:
            stats.update(extra)
        if active and inputs is not None and inputs.last_state_stamp is not None:
            age_stamp = ros_now - inputs.last_state_stamp
            age_steady = now_steady - inputs.last_state_arrival
            stats["observation_age_s"] = max(age_stamp, age_steady)
        return stats
