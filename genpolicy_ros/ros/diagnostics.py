"""``/diagnostics`` for the policy node, built from a plain stats dict.

The node (and its ROS-free runtime) keep counters and rates; this module only turns one
snapshot into a ``diagnostic_msgs/DiagnosticArray`` with a level and a message, so the
rules below are testable without a node.

Stats keys (all optional; missing ones skip their rule; counts are *for the reporting
window*, i.e. since the previous report, so a level recovers once the fault is gone):

================================  ==========================================================
``state``                         lifecycle state: unconfigured / inactive / active /
                                  finalized / error
``backend``                       inference backend in use (free text)
``control_rate_hz``               target executor rate
``executor_rate_hz``              measured command rate
``generation_rate_hz``            chunks generated per second
``latency_p50_ms``/``_p95_ms``    generation latency (observation stamp -> chunk ready)
``latency_budget_ms``             latency the schedule tolerates (e.g. T_a · dt)
``holds``                         control steps spent holding (not counting pause)
``hold_reason``                   why the executor holds now ('' = not holding)
``idle_ticks_total``              ticks held because the plan ran dry after an activation's
                                  first chunk (the robot waited for the policy), since start
``rtc_delay_rows``                inference delay (frozen rows) of the last RTC request
``rtc_delay_latency_ms``          the latency estimate that delay came from
``seams_total``                   merges onto an existing plan (seams), since start
``seam_jump_mean`` / ``_max``     max over joints of |new − old plan| at those switches (after
                                  blending; action units), mean / max since start
``seam_row_step_mean``            the old plan's own step into the switch row (same units; scale)
``paused``                        True while the pause service's latch is set
``drops``                         actions dropped because already in the past
``non_finite``                    non-finite policy outputs caught
``generation_errors``             exceptions inside generation
``rejected_messages``             input messages rejected (bad encoding, ragged, ...)
``observation_age_s``             age of the oldest required observation
``observation_timeout_s``         the staleness limit
``tracking_fault``                True while the safety filter holds because the measured
                                  position disagrees with the recent commands
``tracking_error_max``            that disagreement (largest joint, rad or m)
================================  ==========================================================

Level rules (reliability.md rows 1, 4, 7, 8, 11):

- ERROR: ``state == "error"``; ``non_finite > 0``; ``generation_errors > 0``;
  ``tracking_fault`` (measured position vs commands, runtime/safety_filter.py);
  observation older than 2 × ``observation_timeout_s``.
- WARN: observation older than ``observation_timeout_s``; holding while not paused
  (``hold_reason`` set or ``holds > 0``); ``drops > 0``;
  ``latency_p95_ms > latency_budget_ms``; while active, ``executor_rate_hz`` below 90 %
  of ``control_rate_hz``; ``rejected_messages > 0``.
- OK otherwise — including an intentional pause and an inactive/unconfigured node
  (reported in the message, not an error).
The message lists every triggered reason, worst first, or "ok".
"""
from __future__ import annotations

import math
from typing import Any, List, Mapping, Optional, Tuple

OK, WARN, ERROR = 0, 1, 2
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR"}
STALE_ERROR_FACTOR = 2.0
RATE_WARN_FRACTION = 0.9


def _num(stats: Mapping[str, Any], key: str) -> Optional[float]:
    value = stats.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def diagnostic_level(stats: Mapping[str, Any]) -> Tuple[int, List[str]]:
    """Apply the level rules -> ``(level in {OK, WARN, ERROR}, reasons worst first)``."""
    errors: List[str] = []
    warnings: List[str] = []
    notes: List[str] = []

    state = stats.get("state")
    if state == "error":
        errors.append("node in error state")
    elif state is not None and state != "active":
        notes.append(f"node {state}")

    non_finite = _num(stats, "non_finite")
    if non_finite:
        errors.append(f"{int(non_finite)} non-finite policy output(s) rejected")
    if stats.get("tracking_fault"):
        error = _num(stats, "tracking_error_max")
        errors.append("measured position disagrees with the commands"
                      + (f" by {error:.3g}" if error is not None else "") + ": holding the last command")
    gen_errors = _num(stats, "generation_errors")
    if gen_errors:
        errors.append(f"{int(gen_errors)} generation error(s)")

    age, timeout = _num(stats, "observation_age_s"), _num(stats, "observation_timeout_s")
    if age is not None and timeout is not None and timeout > 0:
        if not math.isfinite(age) or age > STALE_ERROR_FACTOR * timeout:
            errors.append(f"observations stale: {age:.3f} s > {STALE_ERROR_FACTOR:g} x {timeout:g} s")
        elif age > timeout:
            warnings.append(f"observations stale: {age:.3f} s > {timeout:g} s")

    hold_reason = stats.get("hold_reason") or ""
    holds = _num(stats, "holds")
    if stats.get("paused"):  # an operator's pause is intended: reported, not a warning
        notes.append("paused")
    elif hold_reason:
        warnings.append(f"holding: {hold_reason}")
    elif holds:
        warnings.append(f"held for {int(holds)} step(s)")

    drops = _num(stats, "drops")
    if drops:
        warnings.append(f"{int(drops)} late action(s) dropped")
    p95, budget = _num(stats, "latency_p95_ms"), _num(stats, "latency_budget_ms")
    if p95 is not None and budget is not None and p95 > budget:
        warnings.append(f"latency p95 {p95:.1f} ms over budget {budget:.1f} ms")
    rate, target = _num(stats, "executor_rate_hz"), _num(stats, "control_rate_hz")
    if state == "active" and rate is not None and target and rate < RATE_WARN_FRACTION * target:
        warnings.append(f"executor at {rate:.1f} Hz, target {target:g} Hz")
    rejected = _num(stats, "rejected_messages")
    if rejected:
        warnings.append(f"{int(rejected)} input message(s) rejected")

    level = ERROR if errors else WARN if warnings else OK
    return level, errors + warnings + notes


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def build_diagnostic_array(stats: Mapping[str, Any], stamp=None, name: str = "genpolicy: policy",
                           hardware_id: str = "genpolicy"):
    """One snapshot -> ``diagnostic_msgs/DiagnosticArray`` with a single status.

    Every stats entry becomes a KeyValue (sorted by key); level and message follow
    :func:`diagnostic_level`. ``stamp`` is a ``builtin_interfaces/Time`` (node clock).
    """
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    level, reasons = diagnostic_level(stats)
    status = DiagnosticStatus(
        level=(DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR)[level],
        name=name,
        message="; ".join(reasons) if reasons else "ok",
        hardware_id=hardware_id,
        values=[KeyValue(key=str(k), value=_format_value(v)) for k, v in sorted(stats.items())],
    )
    array = DiagnosticArray(status=[status])
    if stamp is not None:
        array.header.stamp = stamp
    return array
