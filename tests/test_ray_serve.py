"""The sharded index on Ray Serve as a cluster (issue 27): a head and two worker nodes on this machine, two shards
of two replicas each deployed by ``rag serve --ray``, checked against ``rag serve`` of the same folder in one
process by eval/ray_serve_check.py (run as a user runs it, in its own process, at the seed's size).

Skipped when Ray is not installed (``pip install '.[ray]'``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray.serve", reason="Ray Serve is not installed: pip install '.[ray]'")

ROOT = Path(__file__).resolve().parents[1]


def test_the_ray_serve_cluster_answers_as_one_process_survives_a_killed_replica_and_shows_writes(tmp_path):
    out = tmp_path / "ray-serve.json"
    command = [sys.executable, "eval/ray_serve_check.py", "--articles", "0", "--questions", "40"]
    command += ["--load-seconds", "9", "--clients", "3", "--work", str(tmp_path / "work"), "--out", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["agreement"] >= 0.99, result["agreement_detail"]
    assert result["agreement_detail"]["questions"] == 40
    killed = result["replica_killed_under_load"]
    assert killed["requests"] > killed["requests_before_kill"] > 0  # asked before and after the kill
    assert killed["errors_5xx"] <= killed["in_flight_at_kill"], killed
    assert killed["replica_replaced_s"] is not None  # Serve ran two replicas of the shard again
    visible = result["write_visibility"]
    assert visible["replicas_seen"] == 2 and visible["visible_on_every_replica_s"] is not None, visible
    assert visible["router_first_read_status"] == 200  # the router reads its own write at once
