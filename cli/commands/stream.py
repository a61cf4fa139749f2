"""`twinstream ingest | ingest status | publish | results`: the Kafka side of the command line.

Each function is its command's composition root: it builds the Kafka clients from the settings it is
given, prints with the given rich console, and returns the process exit code.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from cli.console import console, settings_or_exit
from twinstream.codec import result_to_dict
from twinstream.config import Settings, TenantBinding
from twinstream.contracts import DEFAULT_TENANT, DEFAULT_TOP_K, MatchResult, Op
from twinstream.tenant_topics import images_topic_for, results_topic_for


def ingest(settings: Settings, console: Console, *, workers: int | None = None) -> int:
    """`twinstream ingest [--workers N]`: run N workers in group ``ingest.group_id`` until SIGTERM/SIGINT."""
    from services.ingest.main import run_worker
    from services.ingest.supervisor import Supervisor

    count = workers or settings.ingest.workers
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    k = settings.kafka
    per_tenant = ".<tenant>" if k.tenant_binding is TenantBinding.TOPIC else ""
    console.print(
        f"ingest: {count} worker(s), group [bold]{escape(settings.ingest.group_id)}[/bold], "
        + escape(f"{k.images_topic}{per_tenant} → {k.results_topic}{per_tenant} / {k.dlq_topic}")
    )
    if count == 1:
        run_worker(settings, 0)
        return 0
    return Supervisor(settings, count).run()


def ingest_status(settings: Settings, console: Console, *, as_json: bool = False) -> int:
    """`twinstream ingest status`: members, assignments, committed offsets and lag of the ingest group."""
    from services.ingest.clients import build_admin
    from services.ingest.results_reader import build_reader
    from services.ingest.status import group_status

    admin, consumer = build_admin(settings.kafka), build_reader(settings.kafka)
    try:
        status = group_status(admin, consumer, settings.ingest.group_id, settings.kafka.images_topic)
    finally:
        admin.close()
        consumer.close()
    if as_json:
        from dataclasses import asdict

        console.print_json(json.dumps({**asdict(status), "total_lag": status.total_lag}))
        return 0
    console.print(
        f"group [bold]{escape(status.group)}[/bold] on {escape(status.topic)}: {escape(status.state)}, "
        f"{len(status.members)} member(s), total lag {status.total_lag}"
    )
    # Client ids and hosts are chosen by whoever joins the group: plain text cells, never markup.
    members = Table("member", "client id", "host", "partitions", title="members")
    for m in status.members:
        members.add_row(
            *map(Text, (m.member_id[-12:], m.client_id, m.host, ",".join(map(str, m.partitions)) or "-"))
        )
    partitions = Table("partition", "committed", "end", "lag", "owner", title="partitions")
    for p in status.partitions:
        committed = "-" if p.committed is None else str(p.committed)
        partitions.add_row(*map(Text, (str(p.partition), committed, str(p.end), str(p.lag), p.owner or "-")))
    console.print(members, partitions)
    return 0


def publish(
    settings: Settings,
    console: Console,
    paths: Sequence[Path],
    *,
    op: Op,
    subject: str = "",
    subject_from_dir: bool = False,
    tenant: str = DEFAULT_TENANT,
    top_k: int = DEFAULT_TOP_K,
    envelope: bool = False,
    manifest: Path | None = None,
) -> int:
    """`twinstream publish PATH... --op OP [--subject S | --subject-from-dir] [--tenant T]`, with progress."""
    from services.ingest import publishing as pub

    try:
        items = pub.plan(pub.collect_images(paths), op, subject=subject, subject_from_dir=subject_from_dir)
    except pub.PublishError as exc:
        console.print(Text(str(exc), style="red"))  # names the user's paths: text, not markup
        return 2
    total_bytes = sum(item.path.stat().st_size for item in items)
    topic = images_topic_for(settings.kafka, tenant)  # the tenant's own one when bound to topics
    producer = pub.build_publish_producer(settings.kafka)
    columns = (*Progress.get_default_columns()[:1], BarColumn(), MofNCompleteColumn())
    try:
        with Progress(*columns, TimeRemainingColumn(), console=console) as progress:
            task = progress.add_task(f"{op.value} → {topic}", total=len(items))
            summary = pub.publish_files(
                producer,
                topic,
                items,
                op,
                tenant=tenant,
                top_k=top_k,
                envelope=envelope,
                on_ack=lambda _size: progress.advance(task),
            )
    finally:
        producer.close()
    if manifest is not None:
        pub.write_manifest(manifest, items, op, tenant)
    console.print(
        Text(
            f"published {summary.sent}/{len(items)} images ({total_bytes / 1e6:.1f} MB) as {op.value} for "
            f"tenant {tenant!r} in {summary.seconds:.1f}s ({summary.rate:.0f}/s); failed: {summary.failed}"
            + (f"; request ids in {manifest}" if manifest else "")
        )
    )
    for error in summary.errors[:5]:
        console.print(Text(f"  {error}", style="red"))
    return 0 if summary.failed == 0 else 1


def results(
    settings: Settings,
    console: Console,
    *,
    follow: bool = False,
    request_ids: Sequence[str] = (),
    as_json: bool = False,
    tenant: str = DEFAULT_TENANT,
    err_console: Console | None = None,
) -> int:
    """`twinstream results [--follow] [--request-id ID ...] [--json] [--tenant T]`: a table, or JSON lines.

    ``tenant`` picks the tenant's own results topic when tenants are bound to topics. Every field is
    producer-chosen data and is printed as plain text, never as rich markup. Records that are not results
    are skipped, each with a warning on ``err_console`` (stderr), and counted.
    """
    from services.ingest.results_reader import SkippedRecord, build_reader, read_results

    warn = err_console or Console(stderr=True)
    skipped: list[SkippedRecord] = []

    def on_skipped(record: SkippedRecord) -> None:
        skipped.append(record)
        where = f"partition {record.partition} offset {record.offset}"
        warn.print(
            Text(f"warning: skipped an undecodable record at {where}: {record.reason}", style="yellow")
        )

    consumer = build_reader(settings.kafka)
    table = Table(
        "request id", "op", "tenant", "subject", "decision", "distance", "p", "best candidate", "error"
    )
    count = 0
    try:
        for record in read_results(
            consumer, results_topic_for(settings.kafka, tenant), follow=follow, request_ids=request_ids,
            on_skipped=on_skipped,
        ):  # fmt: skip
            count += 1
            if as_json:
                print(json.dumps(result_to_dict(record.result)), flush=True)
            elif follow:
                console.print_json(json.dumps(result_to_dict(record.result)))  # JSON text, never markup
            else:
                table.add_row(*_row(record.result))
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    if not (as_json or follow):
        console.print(table)
        console.print(
            f"{count} result(s)" + (f", {len(skipped)} undecodable record(s) skipped" if skipped else "")
        )
    elif skipped:
        warn.print(Text(f"{len(skipped)} undecodable record(s) skipped", style="yellow"))
    return 0


def _row(r: MatchResult) -> list[Text]:
    """One table row of plain text cells (ids and details are data: ``[/red]`` is shown, not parsed)."""
    best = f"{r.candidates[0].subject} ({r.candidates[0].distance:.3f})" if r.candidates else ""
    cells = (
        r.request_id,
        r.op.value if r.op else "",
        r.tenant,
        r.subject,
        r.decision.value,
        "" if r.distance is None else f"{r.distance:.3f}",
        "" if r.probability is None else f"{r.probability:.2f}",
        best,
        r.error_reason or "",
    )
    return [Text(cell) for cell in cells]


JsonOpt = Annotated[bool, typer.Option("--json", help="JSON output for scripts")]


# --- typer commands ----------------------------------------------------------------------------------


def ingest_command(
    ctx: typer.Context, workers: Annotated[int | None, typer.Option(min=1, help="worker processes")] = None
) -> None:
    """Run ingest workers (consumer group) until SIGTERM/SIGINT; `ingest status` shows the group."""
    if ctx.invoked_subcommand is not None:
        return
    from cli.stack.raytools import use_token_auth

    use_token_auth()
    raise typer.Exit(ingest(settings_or_exit(), console, workers=workers))


def ingest_status_command(as_json: JsonOpt = False) -> None:
    """Group members, assignments, committed offsets and lag per partition."""
    raise typer.Exit(ingest_status(settings_or_exit(), console, as_json=as_json))


def publish_command(
    paths: Annotated[list[Path], typer.Argument(exists=True, help="image files or root/<identity>/ trees")],
    op: Annotated[Op, typer.Option(help="what each image asks for")] = Op.IDENTIFY,
    subject: Annotated[str, typer.Option(help="subject for every image")] = "",
    subject_from_dir: Annotated[bool, typer.Option(help="subject = the image's folder name")] = False,
    tenant: Annotated[str, typer.Option()] = DEFAULT_TENANT,
    top_k: Annotated[int, typer.Option(min=1)] = DEFAULT_TOP_K,
    envelope: Annotated[bool, typer.Option(help="send the ImageEvent protobuf envelope")] = False,
    manifest: Annotated[Path | None, typer.Option(help="write request ids here (JSON lines)")] = None,
) -> None:
    """Publish image files to the images topic with the header contract, with a progress bar."""
    code = publish(
        settings_or_exit(), console, paths, op=op, subject=subject, subject_from_dir=subject_from_dir,
        tenant=tenant, top_k=top_k, envelope=envelope, manifest=manifest,
    )  # fmt: skip
    raise typer.Exit(code)


def results_command(
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new results")] = False,
    request_id: Annotated[list[str] | None, typer.Option(help="only these request ids")] = None,
    as_json: JsonOpt = False,
    tenant: Annotated[str, typer.Option(help="whose results topic, when tenants are bound to topics")] = (
        DEFAULT_TENANT
    ),
) -> None:
    """Print results from the results topic as a table, or JSON lines."""
    code = results(
        settings_or_exit(),
        console,
        follow=follow,
        request_ids=request_id or (),
        as_json=as_json,
        tenant=tenant,
    )
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Mount ``ingest`` (with ``ingest status``), ``publish`` and ``results`` on the root app."""
    ingest_app = typer.Typer(help="Kafka ingest workers.", invoke_without_command=True)
    ingest_app.callback()(ingest_command)
    ingest_app.command("status")(ingest_status_command)
    app.add_typer(ingest_app, name="ingest")
    app.command("publish")(publish_command)
    app.command("results")(results_command)
