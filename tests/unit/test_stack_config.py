"""Stack pieces that need no running service: templates, cluster ids, pid tracking."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from cli.stack.component import DEPLOY_DIR, render_template
from cli.stack.kafka import new_cluster_id
from cli.stack.process import ManagedProcess, StackError
from twinstream.config import Settings


def test_server_properties_render_every_placeholder(tmp_path: Path):
    out = render_template(
        DEPLOY_DIR / "kafka" / "server.properties",
        tmp_path / "server.properties",
        {"port": 1, "controller_port": 2, "log_dirs": tmp_path, "partitions": 4,
         "max_message_bytes": 5, "socket_request_max_bytes": 6},
    )  # fmt: skip
    text = out.read_text()
    assert "listeners=PLAINTEXT://127.0.0.1:1,CONTROLLER://127.0.0.1:2" in text
    assert "process.roles=broker,controller" in text


def test_a_missing_value_is_an_error_not_a_silent_placeholder(tmp_path: Path):
    with pytest.raises(StackError, match=r"unfilled placeholder \$\{\w+\}"):
        render_template(DEPLOY_DIR / "kafka" / "server.properties", tmp_path / "x", {})


def test_cluster_ids_are_kraft_shaped():
    ids = {new_cluster_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", i) for i in ids)


def test_a_recycled_pid_is_not_mistaken_for_ours(tmp_path: Path):
    proc = ManagedProcess("sleeper", tmp_path)
    pid = proc.start(["sleep", "30"])
    assert proc.alive()
    rec = proc.record()
    assert rec is not None and rec.pid == pid
    proc.pid_file.write_text(f"{pid} {rec.create_time - 100}\n")  # same pid, other start time
    assert not proc.alive()
    assert not proc.stop()  # not ours: left alone
    subprocess.run(["kill", str(pid)], check=True)


def test_settings_ports_are_the_stack_endpoints():
    from cli.stack import Stack

    s = Settings()
    stack = Stack(s, Path("/tmp/nowhere"))
    assert stack.part("kafka").endpoint == f"127.0.0.1:{s.kafka.port}"
    assert stack.part("milvus").endpoint == s.milvus.uri
