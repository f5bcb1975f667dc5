"""Two-worker TensorFlow clusters on localhost, for the multi-worker tests:
one subprocess per worker, each with its TF_CONFIG."""

import json
import os
import socket
import subprocess


def free_ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def run_workers(argv, env, cwd, timeout, n=2):
    """Runs worker i as `argv(i)` with `env(i)` (added to os.environ, the
    cluster's TF_CONFIG set), all at once; returns `[(returncode, output)]`
    once every worker ended (any still running at the timeout is killed)."""
    workers = [f"127.0.0.1:{p}" for p in free_ports(n)]
    procs = []
    for index in range(n):
        full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                        CUDA_VISIBLE_DEVICES="", **env(index),
                        TF_CONFIG=json.dumps({
                            "cluster": {"worker": workers},
                            "task": {"type": "worker", "index": index}}))
        procs.append(subprocess.Popen(
            argv(index), env=full_env, cwd=cwd, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True))
    logs = []
    try:
        for proc in procs:
            logs.append(proc.communicate(timeout=timeout)[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return [(proc.returncode, log) for proc, log in zip(procs, logs)]
