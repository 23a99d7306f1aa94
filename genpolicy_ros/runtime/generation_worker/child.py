"""Entry point of the spawned generation child: lifeline, heartbeat, then serve requests.

Messages child → parent (tuples over the pipe): ``("progress", text)`` while starting or
building in the background, ``("ready", info)`` or ``("fatal", message, traceback)`` once,
then ``("result", seq, actions, meta)`` / ``("error", seq, message, traceback)`` per request.
Parent → child: ``("generate", request_without_obs, encoded_obs)`` and ``("stop",)``.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback

from .config import WorkerConfig
from .lifeline import die_with_parent
from .transport import AttachedArrays, decode_tree


class _LockedSender:
    """``conn.send`` from the serving thread and the background-build thread, one at a time."""

    def __init__(self, conn):
        self._conn = conn
        self._lock = threading.Lock()

    def send(self, msg) -> bool:
        with self._lock:
            try:
                self._conn.send(msg)
                return True
            except (OSError, ValueError):
                return False


def child_main(conn, cfg: WorkerConfig, heartbeat, parent_pid: int) -> None:
    """Run in the spawned child until ``stop``, EOF on the pipe, or the parent's death."""
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the parent, which stops us
    stop = threading.Event()

    def beat():
        while not stop.is_set():
            heartbeat.value = time.monotonic()
            stop.wait(cfg.heartbeat_interval_s)

    threading.Thread(target=beat, name="heartbeat", daemon=True).start()
    sender = _LockedSender(conn)
    from .session import GenerationSession  # imports torch: after the lifeline is armed

    try:
        session = GenerationSession(cfg, progress=lambda text: sender.send(("progress", text)))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, then exit
        sender.send(("fatal", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        stop.set()
        return
    sender.send(("ready", session.info))
    attached = AttachedArrays()
    try:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break  # parent went away
            if msg[0] == "stop":
                break
            _, req, encoded = msg
            try:
                obs = decode_tree(encoded, attached)
                actions, meta = session.generate(req, obs)
                reply = ("result", req.seq, actions, meta)
            except Exception as exc:  # noqa: BLE001 - reported; keep serving
                reply = ("error", req.seq, f"{type(exc).__name__}: {exc}", traceback.format_exc())
            if not sender.send(reply):
                break
    finally:
        stop.set()
        session.close()
    # Nothing left to flush: skip the interpreter's teardown of torch (~0.1-0.2 s), so that
    # close() in the parent rarely needs SIGTERM.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
