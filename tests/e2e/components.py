"""Stopping and starting the upstream processes `scripts/e2e up` started (etcd, kube-apiserver,
KEDA, Prometheus, the model servers...), to inject faults. Each was started through a script
of its own under $E2E_STATE_DIR/run holding its environment and command line; starting one
again runs that script, appending to the same log, and records the new pid where
`scripts/e2e down` finds it."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from product import STATE, wait


def log_tail(name: str, lines: int = 80) -> str:
    try:
        text = (STATE / "logs" / f"{name}.log").read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log for {name})"
    return "\n".join(text.splitlines()[-lines:])


def pid(name: str) -> int | None:
    """The pid of `name` if it is running."""
    try:
        p = int((STATE / "pids" / f"{name}.pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(p, 0)
    except ProcessLookupError:
        return None
    return p


def stop(name: str, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    """Stops `name` and waits until it is gone (SIGKILL after `timeout`)."""
    p = pid(name)
    if p is None:
        return
    os.kill(p, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(p):
            return
        time.sleep(0.1)
    os.kill(p, signal.SIGKILL)
    wait(f"{name} (pid {p}) to exit after SIGKILL", lambda: not alive(p), timeout=10)


def alive(p: int) -> bool:
    try:
        # Reaps it if it was our child (a component this module started again).
        os.waitpid(p, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        os.kill(p, 0)
    except ProcessLookupError:
        return False
    # A zombie of another parent still answers kill(0); its state says it is gone.
    try:
        with open(f"/proc/{p}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def start(name: str) -> int:
    """Starts `name` again exactly as `scripts/e2e up` did."""
    if pid(name) is not None:
        raise AssertionError(f"{name} is already running")
    script = STATE / "run" / f"{name}.sh"
    with open(STATE / "logs" / f"{name}.log", "ab") as log:
        log.write(f"\n---- started again by the tests at {time.strftime('%H:%M:%S')}\n".encode())
        proc = subprocess.Popen([str(script)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    (STATE / "pids" / f"{name}.pid").write_text(f"{proc.pid}\n")
    return proc.pid
