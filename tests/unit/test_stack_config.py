"""Stack pieces that need no running service: templates, cluster ids, pid tracking."""

from __future__ import annotations

import re
import stat
import subprocess
from pathlib import Path

import pytest

from cli.stack.component import DEPLOY_DIR, render_template
from cli.stack.kafka import KafkaBroker, new_cluster_id
from cli.stack.process import ManagedProcess, StackError
from twinstream.config import Settings, load_settings


def _broker_config(tmp_path: Path, **kafka: object) -> dict[str, str]:
    """The local broker's rendered server.properties as a dict (asserting each key appears once)."""
    settings = load_settings(kafka={"port": 1, "controller_port": 2, **kafka})
    path = KafkaBroker(settings, tmp_path).write_config(tmp_path / "data")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it may hold the admin's password
    pairs = [
        line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#")
    ]
    keys = [key for key, _ in pairs]
    assert len(keys) == len(set(keys)), "a key given twice: the last one would silently win"
    return dict(pairs)


def test_server_properties_render_every_placeholder(tmp_path: Path):
    config = _broker_config(tmp_path)
    assert config["listeners"] == "PLAINTEXT://127.0.0.1:1,CONTROLLER://127.0.0.1:2"
    assert config["process.roles"] == "broker,controller"
    assert "authorizer.class.name" not in config


def test_sasl_scram_broker_takes_scram_logins_and_enforces_acls(tmp_path: Path):
    config = _broker_config(
        tmp_path, security="sasl-scram", sasl_username="admin", sasl_password="s3cret-enough-pw"
    )
    assert config["listeners"] == "SASL://127.0.0.1:1,CONTROLLER://127.0.0.1:2"
    assert config["listener.security.protocol.map"] == "CONTROLLER:SASL_PLAINTEXT,SASL:SASL_PLAINTEXT"
    assert config["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert config["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert config["super.users"] == "User:admin"
    assert config["allow.everyone.if.no.acl.found"] == "false"
    assert (
        'username="admin" password="s3cret-enough-pw"'
        in config["listener.name.sasl.scram-sha-512.sasl.jaas.config"]
    )


@pytest.mark.parametrize(
    "password", ["short", 'has"quote-in-it', "comma,breaks-add-scram", "${placeholder}x"]
)
def test_an_admin_password_that_cannot_go_into_the_broker_config_is_refused(tmp_path: Path, password: str):
    with pytest.raises(StackError, match="TWINSTREAM_KAFKA__SASL_PASSWORD"):
        _broker_config(tmp_path, security="sasl-scram", sasl_username="admin", sasl_password=password)


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
