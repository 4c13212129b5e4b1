"""A throwaway one-node SLURM cluster for tests, built from Debian's packages.

``ensure_installed()`` installs ``slurmctld slurmd slurm-client munge`` with apt-get when they
are missing; it returns why a cluster cannot run here, or ``None`` when it can.
``SlurmCluster.start(root)`` writes ``slurm.conf``, ``gres.conf`` and a munge key under ``root``,
starts ``munged``, ``slurmctld`` and ``slurmd`` in the foreground as child processes (their PIDs
are recorded; nothing is found or stopped by name), and waits until the node ``localhost`` is
idle. Every client command must see ``SLURM_CONF``: use ``cluster.env`` or ``cluster.client``.
``stop()`` cancels the cluster's jobs and ends exactly the processes it started.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.ports import free_ports

__all__ = ["NODE", "PACKAGES", "SlurmCluster", "SlurmError", "ensure_installed"]

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
BINARIES = ("slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "munged", "mungekey")
NODE = "localhost"
# Long enough that squeue still lists a finished job when the executor asks for its state.
MIN_JOB_AGE_S = 300

SLURM_CONF = """\
# Written by tests/workflow/slurm_cluster.py: a one-node test cluster, everything under {root}.
ClusterName=fmcibtest
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={munge_socket}
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
MpiDefault=none
SwitchType=switch/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge={min_job_age}
ReturnToService=2
GresTypes=gpu
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} Boards={boards} SocketsPerBoard={sockets} \
CoresPerSocket={cores} ThreadsPerCore={threads} RealMemory={memory} Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""

# snakemake-executor-plugin-slurm-jobstep (0.6) strips every SLURM_* variable but a few job ids
# before its inner `srun`, SLURM_CONF included; real clusters keep slurm.conf where srun looks by
# default, this one keeps it under /tmp. The jobs find this wrapper first on their PATH.
SRUN_WRAPPER = """\
#!/bin/sh
SLURM_CONF={conf} exec {srun} "$@"
"""

# A fake GPU: the scheduler counts it, so rules asking for `--gpus=1` can be placed.
GRES_CONF = """\
AutoDetect=off
NodeName={node} Name=gpu File=/dev/null Count=1
"""


class SlurmError(RuntimeError):
    """The cluster did not come up; the message holds the daemon logs."""


def _missing_binaries() -> list[str]:
    return [name for name in BINARIES if shutil.which(name, path=_sbin_path()) is None]


def _sbin_path() -> str:
    return os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def ensure_installed() -> str | None:
    """Install SLURM and munge if needed; return why a cluster cannot run here, or None."""
    if not _missing_binaries():
        return None if os.geteuid() == 0 else "slurmd must run as root to launch jobs"
    if os.geteuid() != 0:
        return f"SLURM is not installed and installing {' '.join(PACKAGES)} needs root"
    if shutil.which("apt-get") is None:
        return "SLURM is not installed and there is no apt-get to install it"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES],
    ):
        try:
            result = subprocess.run(
                cmd, env=env, capture_output=True, encoding="utf-8", errors="replace", timeout=600
            )
        except subprocess.TimeoutExpired:
            return f"`{' '.join(cmd)}` took more than 600 s"
        if result.returncode != 0:
            tail = (result.stdout + result.stderr)[-2000:]
            return f"`{' '.join(cmd)}` failed with status {result.returncode}:\n{tail}"
    missing = _missing_binaries()
    return f"installed {' '.join(PACKAGES)} but {missing} are still missing" if missing else None


def _hardware() -> dict[str, str]:
    """CPUs, sockets, cores, threads and RealMemory as slurmd itself detects them."""
    out = subprocess.run(
        [shutil.which("slurmd", path=_sbin_path()), "-C"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    fields = dict(item.split("=", 1) for item in out.split() if "=" in item)
    return {
        "cpus": fields["CPUs"],
        "boards": fields.get("Boards", "1"),
        "sockets": fields["SocketsPerBoard"],
        "cores": fields["CoresPerSocket"],
        "threads": fields["ThreadsPerCore"],
        "memory": fields["RealMemory"],
    }


@dataclass
class SlurmCluster:
    """A running one-node cluster rooted at ``root`` (see the module docstring)."""

    root: Path
    conf: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @classmethod
    def start(cls, root: Path, timeout_s: float = 60.0) -> SlurmCluster:
        """Configure and start munged, slurmctld and slurmd; wait for the node to be idle."""
        for sub in ("bin", "etc", "munge", "state", "spool", "run", "log"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        # munged wants its socket reachable by everyone (execute bit on every parent folder).
        root.chmod(0o755)
        conf = root / "etc" / "slurm.conf"
        munge_socket = root / "munge" / "munge.socket"
        ctld_port, slurmd_port = free_ports(2)
        values = {
            "root": root,
            "node": NODE,
            "ctld_port": ctld_port,
            "slurmd_port": slurmd_port,
            "munge_socket": munge_socket,
            "min_job_age": MIN_JOB_AGE_S,
            **_hardware(),
        }
        conf.write_text(SLURM_CONF.format(**values))
        (root / "etc" / "gres.conf").write_text(GRES_CONF.format(node=NODE))
        srun = root / "bin" / "srun"
        srun.write_text(SRUN_WRAPPER.format(conf=conf, srun=shutil.which("srun")))
        srun.chmod(0o755)
        path = os.pathsep.join([str(srun.parent), _sbin_path()])
        env = dict(os.environ, SLURM_CONF=str(conf), PATH=path)
        # Run from inside a SLURM job, inherited job settings would leak into this cluster's jobs.
        for key in [k for k in env if k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SQUEUE_"))]:
            if key != "SLURM_CONF":
                del env[key]
        cluster = cls(root=root, conf=conf, env=env)
        try:
            cluster._start_munge(munge_socket)
            cluster._spawn("slurmctld", ["slurmctld", "-D", "-f", str(conf)])
            cluster._spawn("slurmd", ["slurmd", "-D", "-N", NODE, "-f", str(conf)])
            cluster._wait_idle(timeout_s)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _start_munge(self, socket_path: Path) -> None:
        key = self.root / "munge" / "munge.key"
        subprocess.run(["mungekey", "--create", "--keyfile", str(key)], check=True, timeout=30)
        key.chmod(0o400)
        self._spawn(
            "munged",
            [
                "munged",
                "--foreground",
                f"--key-file={key}",
                f"--socket={socket_path}",
                f"--pid-file={self.root / 'run' / 'munged.pid'}",
                f"--log-file={self.root / 'log' / 'munged.log'}",
                f"--seed-file={self.root / 'munge' / 'munged.seed'}",
            ],
        )
        self._wait_for(socket_path.exists, 20, "munged socket")

    def _spawn(self, name: str, argv: list[str]) -> None:
        # Output before the daemon opens its log file (a bad slurm.conf) only reaches stdout.
        with open(self.root / "log" / f"{name}.stdout", "wb") as out:
            self.processes[name] = subprocess.Popen(
                argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=self.root
            )

    def _wait_for(self, ready: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            dead = {n: p.returncode for n, p in self.processes.items() if p.poll() is not None}
            if dead:
                raise SlurmError(f"{dead} exited while waiting for {what}\n{self.logs()}")
            if ready():
                return
            time.sleep(0.5)
        raise SlurmError(f"no {what} after {timeout_s:.0f} s\n{self.logs()}")

    def _wait_idle(self, timeout_s: float) -> None:
        def idle() -> bool:
            result = self.client("sinfo", "--noheader", "--Node", "--format=%N %t", check=False)
            return result.returncode == 0 and f"{NODE} idle" in result.stdout

        self._wait_for(idle, timeout_s, f"idle node {NODE} in sinfo")

    def client(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a SLURM client command (sinfo, sbatch, scontrol, ...) against this cluster."""
        result = subprocess.run(
            argv, env=self.env, capture_output=True, encoding="utf-8", errors="replace", timeout=60
        )
        if check and result.returncode != 0:
            raise SlurmError(f"{' '.join(argv)}: {result.stdout}{result.stderr}\n{self.logs()}")
        return result

    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld still remembers (MinJobAge), as ``scontrol show job`` fields."""
        out = self.client("scontrol", "--oneliner", "show", "job").stdout
        return [
            dict(item.split("=", 1) for item in line.split() if "=" in item)
            for line in out.splitlines()
            if line.startswith("JobId=")
        ]

    def logs(self) -> str:
        """The tail of every daemon's log (its stdout where it wrote no log file)."""
        parts = []
        for name in self.processes:
            log_file = self.root / "log" / f"{name}.log"
            if not log_file.is_file() or log_file.stat().st_size == 0:
                log_file = log_file.with_suffix(".stdout")
            if log_file.is_file():
                text = log_file.read_text(errors="replace")[-4000:]
                parts.append(f"--- {log_file} ---\n{text}")
        return "\n".join(parts)

    def _busy(self) -> bool:
        result = self.client("squeue", "--noheader", "--format=%i", check=False)
        return result.returncode == 0 and bool(result.stdout.strip())

    def stop(self) -> None:
        """Cancel this cluster's jobs, then end the daemons it started (by PID), newest first."""
        if "slurmctld" in self.processes and self.processes["slurmctld"].poll() is None:
            self.client("scancel", "--full", "--user", str(os.geteuid()), check=False)
            # Let slurmd's job steps end before slurmd itself goes.
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and self._busy():
                time.sleep(0.5)
        for name in reversed(list(self.processes)):
            proc = self.processes[name]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
