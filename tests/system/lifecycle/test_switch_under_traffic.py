"""The model switch against the real services under traffic: Kafka, Milvus, Redis and Ray Serve, no stand-ins.

200 subjects are enrolled on model A through the app; then, while verify and identify keep arriving over
HTTP and Kafka and new subjects keep being enrolled on both paths, model B is re-indexed from the enrolment
log (a run SIGKILLed half way, then resumed), promoted (`services.app.deploy_versions` redeploys the app
with both versions, then the live pointer moves) and rolled back. No request may fail, every answer is
one version's end to end, and every subject verifies on B after the promote and on A after the rollback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from services.embedder.model import TowerEmbedder
from services.gallery.milvus_gallery import MilvusGallery
from services.gallery.names import collection_name
from services.ingest.serve_pipeline import ServePipeline
from services.lifecycle.clients import LifecycleClients, lifecycle_clients
from services.lifecycle.enrolment_log import EnrolmentLogReader, compacted_state, fold
from services.lifecycle.offsets import reindex_group
from services.lifecycle.registry import VersionEntry
from services.lifecycle.reindex import reindex
from services.lifecycle.replay import BatchDone, ReindexReport
from services.lifecycle.switch import Switchboard, SwitchReport
from services.matching.ports import LoggedEnrolment
from tests.support.lifecycle import digit_images, lifecycle_settings
from tests.support.serving import deploy_app, serving_settings
from tests.support.streams import collect_dead_letters, stream_settings, worker_thread
from tests.support.switch_checks import References, describe, distance_errors, failures, pixels, tag_errors
from tests.support.switch_traffic import PNG, Channel, Traffic
from tests.support.waiting import wait_until
from twinstream.codec.results import result_from_json
from twinstream.config import Settings, write_settings_file
from twinstream.contracts import Decision
from twinstream.images.decode import image_digest

pytestmark = [pytest.mark.system, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[3]
SUBJECTS, PROBES, FRESH = 200, 40, 400
KILL_BATCH, KILL_AFTER = 5, 3  # the killed re-index commits every 5 records; killed after 3 commits
#: The traffic verifies a subject this long after its enrolment was answered: past the switch's 2 s grace
#: and its last catch-up (an enrolment answered by A just before the pointer moves reaches B's collection
#: then; see services.lifecycle.switch). Shorter than a redeploy, so a switch that leaves what A enrolled
#: during the redeploy to its last catch-up fails here.
SETTLE_S = 5.0


def _settings(base: Settings, name: str) -> Settings:
    """Its own Serve app, collections, enrolment log, re-index groups, stream topics; a 2 s switch grace."""
    settings = lifecycle_settings(serving_settings(base, name), name, partitions=2)
    settings = stream_settings(settings, name, partitions=2)
    settings.lifecycle = settings.lifecycle.model_copy(update={"switch_grace_s": 2.0})
    return settings


def _images(count: int) -> list[bytes]:
    """Distinct digit PNGs (distinct digests: one image id per subject)."""
    unique = {image_digest(png): png for _, png in digit_images(1797, seed=11)}
    assert len(unique) >= count
    return list(unique.values())[:count]


def _over_http(url: str, tenant: str, calls: list[tuple[str, bytes]]) -> list[httpx.Response]:
    """POST each (path, image), 8 callers at once."""
    headers = {**PNG, "X-Tenant": tenant}
    with httpx.Client(base_url=url, timeout=120.0) as http, ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda call: http.post(call[0], content=call[1], headers=headers), calls))


def _logged_between(
    reader: EnrolmentLogReader, start: dict[int, int], until: dict[int, int]
) -> dict[str, LoggedEnrolment | None]:
    """The log folded over ``[start, until)`` of each partition (the latest event per image id)."""
    return fold(
        event
        for batch in reader.batches()
        for event in batch.events
        if start.get(event.partition, 0) <= event.offset < until.get(event.partition, 0)
    )


def _raw_forward_per_s(model: Path, entries: list[LoggedEnrolment], settings: Settings) -> float:
    """Images/s of one batched forward pass of ``model`` over these images (best of 5, after a warm-up)."""
    tower = TowerEmbedder.from_dir(model, threads=settings.lifecycle.reindex_threads)
    batch = pixels(tower, [e.image for e in entries], settings)
    tower.embed(batch)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        tower.embed(batch)
        best = min(best, time.perf_counter() - t0)
    return len(entries) / best


@dataclass
class Scenario:
    """The app, the lifecycle clients and the traffic of one run, and what each step measured."""

    settings: Settings
    url: str
    images: list[bytes]
    clients: LifecycleClients
    board: Switchboard
    traffic: Traffic
    versions: tuple[str, str]
    refs: References
    figures: dict[str, object] = field(default_factory=dict)

    def verify_everyone(self, version: str) -> None:
        """Every subject enrolled so far, probed with its own enrolment image, is a MATCH on ``version``."""
        enrolled = {s: e.image for s, e in self.traffic.enrolled_now().items()}
        calls = [(f"/v1/subjects/{s}/verify", self.images[i]) for s, i in enrolled.items()]
        answers = _over_http(self.url, self.traffic.tenant, calls)
        failed = [(s, a.status_code, a.text[:200]) for s, a in zip(enrolled, answers, strict=True)
                  if a.status_code != 200]  # fmt: skip
        assert not failed, f"{len(failed)} of {len(calls)} verifies failed on {version}: {failed[:5]}"
        results = {s: result_from_json(a.content) for s, a in zip(enrolled, answers, strict=True)}
        wrong = [(s, r.decision, r.model_version) for s, r in results.items()
                 if r.decision is not Decision.MATCH or r.model_version != version]  # fmt: skip
        assert not wrong, f"{len(wrong)} of {len(calls)} subjects do not verify on {version}: {wrong[:5]}"

    def kill_reindex_half_way(self, model: Path, tmp: Path) -> dict[int, int]:
        """``python -m services.lifecycle.reindex``, SIGKILLed once its group has committed `KILL_AFTER`
        batches (observed in the group's offsets); returns the offsets it had committed."""
        small = self.settings.model_copy(deep=True)
        small.lifecycle = small.lifecycle.model_copy(update={"reindex_batch": KILL_BATCH})
        command = [sys.executable, "-m", "services.lifecycle.reindex", "--model", str(model),
                   "--settings-file", str(write_settings_file(small, tmp / "reindex.json"))]  # fmt: skip
        group = reindex_group(self.settings, self.versions[1])
        beginning = self.clients.reader.beginning_offsets()
        with (tmp / "reindex.log").open("w") as log:
            proc = subprocess.Popen(
                command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=log
            )

            def committed_enough() -> bool:
                assert proc.poll() is None, f"it ended unkilled: {(tmp / 'reindex.log').read_text()[-2000:]}"
                done = self.clients.offsets.committed(group)
                return sum(o - beginning[p] for p, o in done.items()) >= KILL_AFTER * KILL_BATCH

            wait_until(committed_enough, 120, f"{KILL_AFTER} committed re-index batches", interval_s=0.02)
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=60) == -signal.SIGKILL
        return self.clients.offsets.committed(group)

    def resume_reindex(self, model: Path, at_kill: dict[int, int]) -> ReindexReport:
        """Run the re-index again: it starts where the killed run committed and ends exact."""
        b = self.versions[1]
        entry = self.board.registry.get(b)
        assert entry is not None and not entry.complete
        assert 0 < sum(at_kill.values()) < sum(self.clients.offsets.end().values()), "killed half way"
        starts: list[dict[int, int]] = []
        report = reindex(self.settings, model, on_batch=lambda done: _first(starts, done))
        reader = self.clients.reader
        assert starts[0] == {**reader.beginning_offsets(), **at_kill}  # resumed, not started over
        gallery = MilvusGallery(
            self.clients.milvus, collection_name(self.settings.milvus.collection_prefix, b)
        )
        live = {key for key, value in _logged_between(reader, {}, report.positions).items() if value}
        ids = gallery.all_ids()
        assert ids == live and gallery.count() == len(ids)  # the log's live keys, one row each
        replayed = [e for e in _logged_between(reader, starts[0], report.positions).values() if e]
        self.figures["raw_per_s"] = _raw_forward_per_s(model, replayed, self.settings)
        self.figures["killed_at"] = sum(at_kill.values())
        return report

    def switch(self, phase: str, version: str | None) -> SwitchReport:
        """Promote ``version`` (roll back when None) under traffic; then wait for answers of the new live."""
        live = version or self.versions[0]
        self.traffic.phase = f"switch-{phase}"
        t0 = time.time()
        report = self.board.promote(version) if version else self.board.rollback()
        self.figures[f"switch-{phase}"] = (time.time() - t0, report.caught_up_before, report.caught_up_after)
        self.traffic.phase = phase
        since = time.time()
        wait_until(
            lambda: self.traffic.answered(live, since=since) >= 20
            and sum(e.phase == phase for e in self.traffic.enrolled_now().values()) >= 4,
            120, f"answers and enrolments while {live} is live",
        )  # fmt: skip
        return report


def _first(starts: list[dict[int, int]], done: BatchDone) -> None:
    if done.number == 0:
        starts.append(dict(done.positions))


def _catch_up(settings: Settings, entry: VersionEntry) -> int:
    return reindex(settings, entry.artifact).records


@contextmanager
def _scenario(
    settings: Settings, url: str, images: list[bytes], dirs: tuple[Path, Path]
) -> Iterator[Scenario]:
    """Lifecycle clients, an ingest worker, A adopted as live, and the traffic running (stopped on exit)."""
    from services.app import deploy_versions

    versions = (TowerEmbedder.from_dir(dirs[0]).manifest, TowerEmbedder.from_dir(dirs[1]).manifest)
    with lifecycle_clients(settings) as clients, worker_thread(settings, ServePipeline(settings)):
        board = Switchboard(
            settings, clients.redis, clients.milvus, clients.offsets,
            lambda entry: _catch_up(settings, entry), deploy_versions,
        )  # fmt: skip
        board.adopt(dirs[0], versions[0].version, versions[0].embedding_dim)
        names = (versions[0].version, versions[1].version)
        refs = References(dict(zip(names, dirs, strict=True)), images, settings)
        fresh = iter(range(SUBJECTS + PROBES, len(images)))
        probes = list(range(SUBJECTS, SUBJECTS + PROBES))
        traffic = Traffic(settings, url, settings.serve.app_name, images, probes, fresh, settle_s=SETTLE_S)
        traffic.seed({f"s{i:03d}": i for i in range(SUBJECTS)}, time.time() - 60)
        traffic.start()
        try:
            yield Scenario(settings, url, images, clients, board, traffic, names, refs)
        finally:
            traffic.stop()


def test_promote_and_rollback_under_traffic_fail_nothing_and_mix_no_versions(
    ray_driver: str,
    stack_settings: Settings,
    kafka_bootstrap: str,
    milvus_uri: str,
    redis_url: str,
    model_dirs: tuple[Path, Path],
    unique_name: str,
    tmp_path: Path,
) -> None:
    from ray import serve

    settings, images = _settings(stack_settings, unique_name), _images(SUBJECTS + PROBES + FRESH)
    tenant = settings.serve.app_name
    app = deploy_app(settings, model_dirs[0])
    try:
        enrol = [(f"/v1/subjects/s{i:03d}/images", images[i]) for i in range(SUBJECTS)]
        assert [r.status_code for r in _over_http(app.url, tenant, enrol)] == [201] * SUBJECTS
        with _scenario(settings, app.url, images, model_dirs) as run:
            a, b = run.versions
            run.traffic.phase = "reindex"
            resumed = run.resume_reindex(model_dirs[1], run.kill_reindex_half_way(model_dirs[1], tmp_path))
            run.switch("b", b)
            run.verify_everyone(b)
            run.switch("a", None)
            run.traffic.stop_sending()
            wait_until(lambda: not run.traffic.unanswered(), 120, "an answer to every Kafka request")
        run.verify_everyone(a)
        with lifecycle_clients(settings) as clients:  # A, live again, holds exactly the log's live keys
            gallery_a = MilvusGallery(clients.milvus, collection_name(settings.milvus.collection_prefix, a))
            logged = compacted_state(clients.reader)
            assert gallery_a.all_ids() == set(logged) and gallery_a.count() == len(logged)
        dead = collect_dead_letters(settings)
    finally:
        serve.delete(settings.serve.app_name)
    _check_answers(run, dead)
    _print_figures(run, resumed)


def _check_answers(run: Scenario, dead: list) -> None:
    (a, b), exchanges = run.versions, run.traffic.exchanges
    enrolled = run.traffic.enrolled_now()
    failed = failures(exchanges)
    assert not failed, f"{len(failed)} of {len(exchanges)} requests failed: " + describe(
        failed, {s: e.phase for s, e in enrolled.items()}
    )
    assert not dead, f"{len(dead)} dead letters: {[info for _, info in dead][:5]}"
    assert {e.result.model_version for e in exchanges if e.result} == {a, b}
    images = {s: e.image for s, e in enrolled.items()}
    errors, checked, ambiguous = distance_errors(exchanges, run.refs, images, (a, b))
    assert not errors, f"{len(errors)} of {checked} distances are not their version's: {errors[:5]}"
    assert ambiguous < 0.01 * checked, "A's and B's distances must tell the versions apart"
    tagged = tag_errors(exchanges, run.traffic.pointer_moves, a, b)
    assert not tagged, f"{len(tagged)} answers contradict the switch moments: {tagged[:5]}"
    assert {"reindex", "switch-b", "b", "switch-a", "a"} <= {e.phase for e in enrolled.values()}
    for channel in Channel:
        assert any(e.channel is channel and e.result and e.result.model_version == b for e in exchanges)
    run.figures["checked"] = checked


def _print_figures(run: Scenario, resumed: ReindexReport) -> None:
    (a, b), exchanges, f = run.versions, run.traffic.exchanges, run.figures
    by = {f"{c}/{'A' if v == a else 'B'}": sum(1 for e in exchanges if e.channel is c and e.result
                                                and e.result.model_version == v)
          for c in Channel for v in (a, b)}  # fmt: skip
    raw = float(f["raw_per_s"])  # type: ignore[arg-type]
    phases: dict[str, int] = {}
    for e in run.traffic.enrolled_now().values():
        phases[e.phase] = phases.get(e.phase, 0) + 1
    print(
        f"\nre-index of B: killed after {f['killed_at']} committed records; the resumed run: "
        f"{resumed.images} images in {resumed.seconds:.2f} s = {resumed.images_per_s:.1f} images/s (forward "
        f"{resumed.embed_seconds:.3f} s); B's raw batched forward on the same images: {raw:.0f} images/s "
        f"(ratio {resumed.images_per_s / raw:.3f})\n"
        f"promote (s, caught up before, after) {f['switch-b']}, rollback {f['switch-a']}; {len(exchanges)} "
        f"answers {by}, {f['checked']} distances checked; enrolled per phase {phases}"
    )
