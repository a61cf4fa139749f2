"""promtool accepts both Prometheus configs (compose's and the local stack's as rendered), every rule
file, and the rule unit tests in deploy/prometheus/tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from cli.stack.parts import Prometheus
from twinstream.config import load_settings

PROM_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("promtool") is None, reason="promtool is not installed (apt install prometheus)"
    ),
]


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args], capture_output=True, text=True, check=False, cwd=cwd, timeout=60
    )


def test_compose_config_is_valid_with_its_rule_files_mounted(tmp_path: Path):
    # Compose mounts deploy/prometheus/rules at /etc/prometheus/rules; point the glob at the repo copy.
    text = (PROM_DIR / "prometheus.yml").read_text()
    assert "/etc/prometheus/rules/*.yml" in text
    config = tmp_path / "prometheus.yml"
    config.write_text(text.replace("/etc/prometheus/rules", str(PROM_DIR / "rules")))
    checked = promtool("check", "config", str(config))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "twinstream-alerts.yml" in checked.stdout
    assert "SUCCESS" in checked.stdout


def test_local_stack_config_rendered_by_the_stack_is_valid(tmp_path: Path):
    part = Prometheus(load_settings(metrics={"prometheus_port": 29090}), tmp_path)
    part.prepare()
    rendered = tmp_path / "prometheus" / "prometheus.yml"
    assert "${" not in rendered.read_text()
    checked = promtool("check", "config", str(rendered))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "twinstream-recording.yml" in checked.stdout


def test_every_rule_file_is_valid():
    files = sorted(str(p) for p in (PROM_DIR / "rules").glob("*.yml"))
    checked = promtool("check", "rules", *files)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("SUCCESS") == len(files)


def test_alert_and_recording_rule_unit_tests_pass():
    tests = sorted(str(p.relative_to(PROM_DIR)) for p in (PROM_DIR / "tests").glob("*.yml"))
    assert tests, "no rule unit tests in deploy/prometheus/tests"
    checked = promtool("test", "rules", *tests, cwd=PROM_DIR)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "FAILED" not in checked.stdout + checked.stderr
