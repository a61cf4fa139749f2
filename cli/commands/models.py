"""`twinstream models list | reindex | promote | rollback | adopt` and `twinstream erase`.

Each function is its command's composition root: it builds the clients from the settings
(`services.lifecycle.clients`), prints with the rich console and returns the exit code. The Serve side
of a switch (``services.app.deploy_versions``) is imported only by ``promote`` and ``rollback``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from cli.console import console, settings_or_exit
from twinstream.config import Settings

if TYPE_CHECKING:
    from services.lifecycle.switch import DeployVersions

app = typer.Typer(help="Model versions: re-index from the enrolment log, list, promote, roll back.")
DeployOpt = Annotated[
    bool,
    typer.Option("--deploy/--no-deploy", help="load the versions into the Serve app (else pointers only)"),
]


def _deployer(deploy: bool) -> DeployVersions | None:
    """``services.app.deploy_versions`` (the Serve side of a switch), or None with ``--no-deploy``."""
    if not deploy:
        return None
    from cli.stack.raytools import use_token_auth

    use_token_auth()  # before Ray is first imported
    from services.app import deploy_versions

    return deploy_versions


def list_command(settings: Settings, out: Console, *, as_json: bool = False) -> int:
    """`twinstream models list`: versions, gallery sizes (count(*)), re-index lag, live and previous."""
    from services.lifecycle.clients import lifecycle_clients
    from services.lifecycle.switch import Switchboard

    with lifecycle_clients(settings) as clients:
        board = Switchboard(settings, clients.redis, clients.milvus, clients.offsets, lambda _: 0, None)
        statuses = board.statuses()
    if as_json:
        rows = [
            {"version": s.entry.version, "collection": s.entry.collection, "artifact": s.entry.artifact,
             "gallery_size": s.gallery_size, "complete": s.entry.complete, "lag": s.lag, "live": s.live,
             "previous": s.previous, "reindex_images_per_s": s.entry.images_per_s}
            for s in statuses
        ]  # fmt: skip
        out.print_json(json.dumps(rows))
        return 0
    table = Table(
        "version", "state", "gallery", "complete", "lag", "re-index img/s", "collection", title="models"
    )
    for s in statuses:
        state = "[green]LIVE[/green]" if s.live else ("previous" if s.previous else "")
        table.add_row(
            s.entry.version, state, "-" if s.gallery_size is None else str(s.gallery_size),
            "yes" if s.entry.complete else "no", "-" if s.lag is None else str(s.lag),
            f"{s.entry.images_per_s:.0f}" if s.entry.images_per_s else "", s.entry.collection,
        )  # fmt: skip
    out.print(table)
    return 0


def reindex_command(
    settings: Settings, out: Console, model: Path, *, follow: bool, restart: bool, threads: int | None
) -> int:
    """`twinstream models reindex --model DIR`: build the version's collection from the enrolment log."""
    import signal
    import threading

    from services.lifecycle.reindex import run_with_progress

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    report = run_with_progress(
        settings, model, out, follow=follow, restart=restart, stop=stop, threads=threads
    )
    return 0 if report.caught_up or follow else 1


def switch_command(settings: Settings, out: Console, version: str | None, *, deploy: bool) -> int:
    """`promote VERSION` (or `rollback` when ``version`` is None): see `services.lifecycle.switch`."""
    from services.lifecycle.clients import lifecycle_clients
    from services.lifecycle.registry import VersionEntry
    from services.lifecycle.reindex import reindex
    from services.lifecycle.switch import Switchboard, SwitchError

    def catch_up(entry: VersionEntry) -> int:
        return reindex(settings, entry.artifact).records

    with lifecycle_clients(settings) as clients:
        board = Switchboard(
            settings, clients.redis, clients.milvus, clients.offsets, catch_up, _deployer(deploy)
        )
        try:
            report = board.promote(version) if version else board.rollback()
        except SwitchError as exc:
            out.print(f"[red]refused:[/red] {exc}")
            return 1
    out.print(
        f"[green]{report.live} is live[/green] (previous: {report.previous or '-'}); alias {report.alias} → "
        f"{report.collection}; caught up {report.caught_up_before} + {report.caught_up_after} log records"
    )
    return 0


def adopt_command(settings: Settings, out: Console, model: Path) -> int:
    """`twinstream models adopt --model DIR`: register the version served since the log began as live."""
    from services.lifecycle.clients import lifecycle_clients
    from services.lifecycle.switch import Switchboard, SwitchError
    from twinstream.model.artifact import MANIFEST_FILE, Manifest

    manifest = Manifest.from_json((model / MANIFEST_FILE).read_text())
    with lifecycle_clients(settings) as clients:
        board = Switchboard(settings, clients.redis, clients.milvus, clients.offsets, lambda _: 0, None)
        try:
            report = board.adopt(model, manifest.version, manifest.embedding_dim)
        except SwitchError as exc:
            out.print(f"[red]refused:[/red] {exc}")
            return 1
    out.print(f"[green]{report.live} registered as live[/green]; alias {report.alias} → {report.collection}")
    return 0


def erase_command(
    settings: Settings, out: Console, tenant: str, subject: str, *, verify: bool, url: str | None,
    api_key: str | None,
) -> int:  # fmt: skip
    """`twinstream erase`: through the app's DELETE when it answers, then everywhere, then the proof."""
    from services.lifecycle.clients import lifecycle_clients
    from services.lifecycle.erasure import erase_subject
    from services.lifecycle.erasure_check import verify_erasure

    out.print(f"app: {_delete_over_http(settings, tenant, subject, url, api_key)}")
    with lifecycle_clients(settings) as clients:
        report = erase_subject(clients, tenant, subject)
        out.print(
            f"erased {tenant}/{subject}: {sum(report.collections.values())} vector(s) in "
            f"{len(report.collections)} collection(s), {len(report.image_ids)} log tombstone(s), "
            f"{report.results_deleted} result(s), {report.embeddings_deleted} cached vector(s)"
        )
        if not verify:
            return 0
        checks = verify_erasure(clients, report)
    table = Table("store", "verdict", "detail", title=f"what is left of {tenant}/{subject}")
    for check in checks:
        table.add_row(check.store, "[green]clean[/green]" if check.ok else "[red]LEFT[/red]", check.detail)
    out.print(table)
    return 0 if all(check.ok for check in checks) else 1


def _delete_over_http(settings: Settings, tenant: str, subject: str, url: str | None, key: str | None) -> str:
    """Ask the running app to delete (its replicas update at once); a description of what happened."""
    import httpx

    headers: Mapping[str, str] = {"X-Tenant": tenant}
    key = key or os.environ.get("TWINSTREAM_API_KEY", "")
    if key:
        headers = {**headers, "Authorization": f"Bearer {key}"}
    serve = settings.serve  # services.app.base_url, without importing Ray for it
    default = f"http://{serve.http_host}:{serve.http_port}{serve.route_prefix.rstrip('/')}"
    target = (url or default).rstrip("/") + f"/v1/subjects/{subject}"
    try:
        response = httpx.delete(target, headers=headers, timeout=10.0)
    except httpx.HTTPError as exc:
        return f"not reachable ({type(exc).__name__}); erasing directly"
    return f"DELETE {target} answered {response.status_code}"


# --- typer commands ----------------------------------------------------------------------------------


@app.command("list")
def list_versions(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Versions, their gallery sizes (count(*)), re-index lag, and which is live."""
    raise typer.Exit(list_command(settings_or_exit(), console, as_json=as_json))


@app.command("reindex")
def reindex(
    model: Annotated[Path, typer.Option(exists=True, file_okay=False, help="artifact directory")],
    follow: Annotated[bool, typer.Option(help="keep tailing the log until Ctrl-C")] = False,
    restart: Annotated[bool, typer.Option(help="drop the collection and replay from offset 0")] = False,
    threads: Annotated[int | None, typer.Option(min=1, help="torch threads")] = None,
) -> None:
    """Build a version's collection by replaying the enrolment log (resumes where it stopped)."""
    raise typer.Exit(reindex_command(settings_or_exit(), console, model, follow=follow, restart=restart,
                                     threads=threads))  # fmt: skip


@app.command("promote")
def promote(version: str, deploy: DeployOpt = True) -> None:
    """Make a version live (refused unless its re-index reached the log's end)."""
    raise typer.Exit(switch_command(settings_or_exit(), console, version, deploy=deploy))


@app.command("rollback")
def rollback(deploy: DeployOpt = True) -> None:
    """Make the previous version live again."""
    raise typer.Exit(switch_command(settings_or_exit(), console, None, deploy=deploy))


@app.command("adopt")
def adopt(
    model: Annotated[Path, typer.Option(exists=True, file_okay=False, help="artifact directory")],
) -> None:
    """Register the version served since the enrolment log began as live and complete."""
    raise typer.Exit(adopt_command(settings_or_exit(), console, model))


@app.command("init-log")
def init_log() -> None:
    """Create the enrolment log topic (compacted, configs from the settings), or align its configs."""
    from cli.stack.kafka_admin import ensure_topics

    settings = settings_or_exit()
    k = settings.kafka
    ensure_topics(settings, {k.enrolments_topic: k.partitions})
    console.print(f"enrolment log {k.enrolments_topic}: {k.configs_of(k.enrolments_topic)}")


@app.command("recalibrate")
def recalibrate_command(
    model: Annotated[
        Path, typer.Option(help="artifact directory (any format version)", exists=True, file_okay=False)
    ],
    out: Annotated[Path | None, typer.Option(help="models directory (default: paths.models_dir)")] = None,
    target_far: Annotated[float, typer.Option(help="false accept rate of the default verify point")] = 1e-3,
    seed: Annotated[int, typer.Option(help="the identity split's seed (use the training seed)")] = 0,
) -> None:
    """A new version with the same weights, calibrated and evaluated again on the artifact's data set."""
    from training.recalibrate import recalibrate

    settings = settings_or_exit()
    path = recalibrate(
        model.resolve(), settings.datasets_dir, (out or settings.paths.models_dir).resolve(),
        target_far=target_far, seed=seed,
    )  # fmt: skip
    typer.echo(f"artifact: {path}")


@app.command("pretrained")
def pretrained(
    kind: Annotated[str, typer.Argument(help="face: dlib's face ResNet (128-d, aligned 150×150 chips)")],
    out: Annotated[
        Path | None, typer.Option(help="models directory (default: TWINSTREAM_PATHS__MODELS_DIR)")
    ] = None,
    dataset: Annotated[
        str, typer.Option(help="faces to calibrate and evaluate on: att-faces | folder:PATH")
    ] = ("att-faces"),
    target_far: Annotated[float, typer.Option(help="false accept rate of the default verify point")] = 1e-3,
    seed: Annotated[int, typer.Option(help="seeds the identity split (test identities stay unseen)")] = 0,
) -> None:
    """Write a servable artifact of a pretrained tower, without training: calibrated on the data set's
    non-test identities, evaluated on its test identities."""
    from training.pretrained import export_pretrained_face

    if kind != "face":
        raise typer.BadParameter(f"unknown pretrained tower {kind!r}: the one shipped is 'face'")
    settings = settings_or_exit()
    models_dir = (out or settings.paths.models_dir).resolve()
    path = export_pretrained_face(
        settings.datasets_dir,
        models_dir,
        dataset=dataset,
        seed=seed,
        target_far=target_far,
        faces=settings.faces,
    )
    metrics = json.loads((path / "manifest.json").read_text())["metrics"]
    shown = ("auc", "eer", "oneshot_10way", "ece", "ece_low", "ece_high")
    for key in shown:
        if key in metrics:
            console.print(f"{key:>14}  {metrics[key]:.4f}")
    typer.echo(f"artifact: {path}")  # one plain line: scripts parse it


def erase(
    tenant: Annotated[str, typer.Option(help="tenant of the subject")],
    subject: Annotated[str, typer.Option(help="subject to erase")],
    verify: Annotated[bool, typer.Option(help="then prove, store by store, that nothing is left")] = False,
    url: Annotated[str | None, typer.Option(help="HTTP API base URL (default: the local Serve app)")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="TWINSTREAM_API_KEY", help="API key")] = None,
) -> None:
    """Erase a subject from every model version, the caches, results and the enrolment log."""
    code = erase_command(
        settings_or_exit(), console, tenant, subject, verify=verify, url=url, api_key=api_key
    )
    raise typer.Exit(code)


def register(root: typer.Typer) -> None:
    """Mount ``models`` (a group) and ``erase`` on the root app."""
    root.add_typer(app, name="models")
    root.command("erase")(erase)
