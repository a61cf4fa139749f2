"""The demo's traffic: enrol the unseen identities, then stream arrivals, poison and a class photo.

Order matters: the enrolments are answered before anything else is published (an identify must find
its subject enrolled), then the arrivals, the poison and, for a face model, the class photo go out
together, as a live stream would mix them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from cli.demo.cases import DemoCase, Observed
from cli.demo.class_photo import ClassPhoto, compose_class_photo, pick_students
from cli.demo.kafka_io import collect, publish_cases
from cli.demo.models import demo_training
from cli.demo.plan import DemoPlan, build_cases, png_bytes, poison_payloads
from twinstream.config import Settings
from twinstream.contracts import Op, TenantPolicy
from twinstream.images.preprocess import Preprocessing
from twinstream.model.artifact import Manifest


@dataclass(frozen=True)
class DemoTraffic:
    """What was sent and what came back.

    Attributes:
        plan: The enrolments and arrivals, with their photos.
        cases: Everything published (the plan's cases, the poison, the class photo), with right answers.
        observed: Answers by request id.
        timed: The request ids the throughput and latency figures are about (all but the enrolments).
        tenant: The demo's tenant.
        policy: The tenant's operating points (set by the demo, or the deployment's default).
        class_photo: The composed class photo, for a face model.
    """

    plan: DemoPlan
    cases: list[DemoCase]
    observed: dict[str, Observed]
    timed: list[str]
    tenant: str
    policy: TenantPolicy
    class_photo: ClassPhoto | None


def _set_policy(settings: Settings, tenant: str, policy: TenantPolicy | None) -> TenantPolicy:
    """Store the demo tenant's operating points (as `twinstream policy set` would); returns those in force."""
    default = TenantPolicy(settings.policy.verify_far, settings.policy.identify_fpir)
    if policy is None:
        return default
    from services.results.redis_client import redis_client
    from services.tenants.policies import RedisPolicies

    RedisPolicies(redis_client(settings.redis), default).write(tenant, policy)
    return policy


def _class_photo_case(plan: DemoPlan, out_dir: Path, run_id: str, size: int) -> tuple[ClassPhoto, DemoCase]:
    from PIL import Image

    students = [(s, Image.open(p)) for s, p in pick_students(plan.arrivals, size, seed=0)]
    photo = compose_class_photo(students, seed=0)
    path = out_dir / "class_photo_sent.png"
    photo.image.save(path, format="PNG")
    return photo, DemoCase(f"{run_id}-class-photo", Op.IDENTIFY, path, "", all_faces=True)


def stream_traffic(
    settings: Settings,
    manifest: Manifest,
    dataset: str,
    out_dir: Path,
    *,
    run_id: str,
    limits: tuple[int, int, int],
    timeout_s: float,
    console: Console,
) -> DemoTraffic:
    """Enrol, then stream; ``limits`` = (identities, arrivals per identity, students in the class photo)."""
    from training.datasets import load_dataset

    max_identities, max_per_identity, class_size = limits
    sizing = demo_training(dataset)
    test = load_dataset(dataset, settings.datasets_dir, seed=0).test
    chosen = sorted(set(map(int, test.labels)))[:max_identities]
    keep = [i for i, label in enumerate(test.labels) if int(label) in chosen]
    plan = build_cases(
        [test.images[i] for i in keep],
        [int(test.labels[i]) for i in keep],
        test.class_names,
        out_dir,
        run_id=run_id,
        enrol_images=sizing.enrol_images,
        max_per_identity=max_per_identity,
    )
    tenant = f"demo-{run_id}"
    policy = _set_policy(settings, tenant, sizing.policy)
    enrol = [c for c in plan.cases if c.op is Op.ENROLL]
    arrivals = [c for c in plan.cases if c.op is not Op.ENROLL]
    photo = None
    if manifest.input.kind is Preprocessing.FACE_CHIP and class_size >= 2:
        photo, photo_case = _class_photo_case(plan, out_dir, run_id, class_size)
        arrivals.append(photo_case)
    console.rule(f"streaming {len(plan.cases) + 1} requests through Kafka (tenant {tenant})")
    publish_cases(settings, enrol, tenant, [])
    observed = collect(settings, {c.request_id for c in enrol}, timeout_s)
    poison = [
        (payload, headers, str(reason))
        for payload, headers, reason in poison_payloads(png_bytes(test.images[keep[0]]))
    ]
    poison_cases = publish_cases(settings, arrivals, tenant, poison, run_id)
    timed = [c.request_id for c in arrivals + poison_cases]
    observed |= collect(settings, set(timed), timeout_s)
    cases = enrol + arrivals + poison_cases
    return DemoTraffic(plan, cases, observed, timed, tenant, policy, photo)
