"""The Serve deployment: the stream's ``process`` handle methods and the FastAPI HTTP API, per replica.

It is the composition root of a replica: it builds the Milvus and Redis clients from settings and loads
the model versions it is deployed with (`services.api.served`), each with its tower in this process.
HTTP requests are coalesced (`services.api.coalescer`) into the same batched pipeline the stream uses,
so concurrent callers share one forward pass and one gallery search; each batch is answered by the version
the live pointer names when it starts.

No ``from __future__ import annotations`` here: Serve rebuilds the routes of the class in the
replica and FastAPI must resolve the parameter types (``Request``) at run time.
"""

import asyncio
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from services.api.auth import NamedTenant, Tenant
from services.api.coalescer import Coalescer
from services.api.http import ApiError, ApiReason, read_image, status_for
from services.api.routes import install_error_handlers
from services.api.served import ForwardPool, Lifecycle, ServedVersion, ServedVersions, load_version
from services.deployments import PIPELINE_DEPLOYMENT
from services.gallery.client import connect_with
from services.results.redis_client import redis_client
from services.results.store import RedisResultStore
from services.tenants.policies import RedisPolicies
from twinstream.codec import result_to_json
from twinstream.config import Settings
from twinstream.contracts import (
    DEFAULT_TOP_K,
    MAX_TOP_K,
    POLICY_MAX,
    POLICY_MIN,
    Decision,
    ImageRequest,
    InputError,
    MatchResult,
    Op,
    TenantPolicy,
)
from twinstream.images.prepare_pool import PreparePool
from twinstream.images.prepared import PreparedBatch
from twinstream.images.preprocess import InputSpec, Preprocessing
from twinstream.memory import reuse_freed_memory
from twinstream.metrics import EmbedderMetrics, PipelineMetrics, RayFactory
from twinstream.metrics.gallery_size import GallerySizeTracker
from twinstream.model.artifact import MANIFEST_FILE, Manifest
from twinstream.names import check_name

_Results = TypeVar("_Results", bound=Sequence[MatchResult])
_IMAGE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
            },
        },
    }
}


class PolicyBody(BaseModel):
    """A tenant's operating points; a field left out keeps its current value."""

    model_config = ConfigDict(extra="forbid")

    verify_far: float | None = Field(None, ge=POLICY_MIN, le=POLICY_MAX, description="target FAR of verify")
    identify_fpir: float | None = Field(
        None, ge=POLICY_MIN, le=POLICY_MAX, description="target FPIR of open-set identify"
    )


app = FastAPI(
    title="twinstream",
    description="Siamese-network similarity matching: enrol, verify, identify. Tenant by `X-Tenant` "
    "or `?tenant=`; images as a raw `image/*` body or multipart; `Authorization: Bearer <key>` when "
    "keys are set. Every result is the same JSON document the results topic carries.",
    version="1",
)
install_error_handlers(app)


def _input_of(model_dir: Path) -> InputSpec:
    return Manifest.from_json((model_dir / MANIFEST_FILE).read_text()).input


def _result_response(result: MatchResult, created: bool = False) -> Response:
    if result.decision == Decision.REJECTED:
        body = {
            "reason": str(result.error_reason),
            "detail": result.error_detail,
            "request_id": result.request_id,
        }
        return JSONResponse(body, status_code=status_for(result.error_reason))
    return Response(
        result_to_json(result),
        status_code=201 if created and result.decision == Decision.ENROLLED else 200,
        media_type="application/json",
    )


@serve.deployment(name=PIPELINE_DEPLOYMENT)
@serve.ingress(app)
class PipelineDeployment:
    """Towers + Milvus galleries + Redis results of one or more model versions, behind the stream's
    handle methods and the HTTP API.

    Args:
        settings: Built once by the deploying process and shipped to every replica.
        model_dirs: Artifact directories; the first is the default version while no live pointer is set.
    """

    def __init__(self, settings: Settings, model_dirs: Sequence[str]) -> None:
        reuse_freed_memory()  # activations are reused, not page-faulted in again on every pass
        self._settings = settings
        app.state.api_keys = dict(settings.serve.api_keys)  # read by services.api.auth
        milvus = connect_with(settings.milvus)
        rds = redis_client(settings.redis)
        self._results = RedisResultStore(rds, settings.redis.result_ttl_s)
        self._metrics = PipelineMetrics.create(RayFactory())
        forwards = ForwardPool(EmbedderMetrics.create(RayFactory()))
        default = TenantPolicy(settings.policy.verify_far, settings.policy.identify_fpir)
        self._policies = RedisPolicies(rds, default)
        self._lifecycle = Lifecycle.connect(settings, rds, milvus)
        # HTTP images of face models are cut in processes of their own (dlib holds the GIL), started now.
        faces = any(_input_of(Path(d)).kind is Preprocessing.FACE_CHIP for d in model_dirs)
        self._preparer = (
            PreparePool(settings.serve.prepare_processes, settings.limits, settings.faces) if faces else None
        )
        loaded = [
            load_version(settings, Path(d), milvus=milvus, rds=rds, results=self._results,
                         metrics=self._metrics, forwards=forwards, policies=self._policies,
                         lifecycle=self._lifecycle, preparer=self._preparer)
            for d in model_dirs
        ]  # fmt: skip
        if self._preparer is not None:
            self._preparer.warm()
        self._versions = ServedVersions(loaded, rds, settings.serve.app_name)
        self._versions.claim_default()
        serving = settings.serve
        self._batched: Coalescer[ImageRequest, MatchResult] = Coalescer(
            self._answer_http,
            serving.max_batch_size,
            serving.concurrent_batches,
            serving.batch_wait_timeout_s,
        )
        self._sizes = GallerySizeTracker(self._metrics, self._versions.default.gallery.subjects)

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Apply ``user_config`` live: the HTTP batching's ``max_batch_size`` and ``batch_wait_timeout_s``."""
        if "max_batch_size" in config:
            self._batched.max_batch_size = int(config["max_batch_size"])
        if "batch_wait_timeout_s" in config:
            self._batched.wait_s = float(config["batch_wait_timeout_s"])

    def loaded_versions(self) -> list[str]:
        """The model versions this replica can answer with."""
        return self._versions.versions

    async def process(self, requests: list[ImageRequest]) -> list[MatchResult]:
        """The stream's entry (`twinstream.ports.MatchPipeline`): results in order, stored in Redis.

        Replay-safe: a request id that already has a stored result for the same request gets it back.
        """
        served = await self._versions.live()
        return self._observed(await served.pipeline.process(requests), "stream")

    async def process_prepared(self, batch: PreparedBatch) -> list[MatchResult]:
        """The stream's entry for images the worker decoded (`twinstream.ports.PreparingPipeline`).

        A batch prepared for another version's input spec is refused (`StaleInputSpecError`): the worker
        asks `input_spec` again and re-prepares.
        """
        served = await self._versions.live()
        return self._observed(await served.pipeline.process_prepared(batch), "stream")

    async def input_spec(self) -> InputSpec:
        """What ingest workers prepare images for: the live version's input spec."""
        return (await self._versions.live()).pipeline.matcher.manifest.input

    async def _answer_http(self, requests: list[ImageRequest]) -> list[MatchResult]:
        """A batch of HTTP requests (`services.api.coalescer`), answered by the live version."""
        served = await self._versions.live()
        return list(self._observed(await served.pipeline.process(requests), "http"))

    def _observed(self, results: _Results, entry: str) -> _Results:
        """Record a batch's decisions, scores and timings; mark tenants whose gallery size changed."""
        self._metrics.observe_batch(results, entry)
        self._sizes.touch(results)
        return results

    async def _image_request(
        self,
        request: Request,
        tenant: str,
        op: Op,
        subject: str = "",
        top_k: int = DEFAULT_TOP_K,
        all_faces: bool = False,
    ) -> ImageRequest:
        data, content_type = await read_image(request, self._settings.limits.max_image_bytes)
        return ImageRequest(
            uuid.uuid4().hex, op, data, tenant, subject, top_k, content_type, all_faces=all_faces
        )

    async def _live(self) -> ServedVersion:
        return await self._versions.live()

    @app.get("/healthz")
    async def healthz(self) -> dict[str, Any]:
        """Liveness: the replica answers, with the live model version and every version it has loaded."""
        served = await self._live()
        return {"status": "ok", "model_version": served.version, "loaded_versions": self._versions.versions}

    @app.post("/v1/embed", openapi_extra=_IMAGE_BODY)
    async def embed(self, request: Request, tenant: Tenant) -> dict[str, Any]:
        """The L2-normalised embedding of one image."""
        req = await self._image_request(request, tenant, Op.IDENTIFY)
        served = await self._live()
        try:
            vector = await served.pipeline.embed_image(req)
        except InputError as exc:
            raise ApiError.from_input(exc) from None
        return {"model_version": served.version, "dim": len(vector), "embedding": vector.tolist()}

    @app.post("/v1/subjects/{subject}/images", status_code=201, openapi_extra=_IMAGE_BODY)
    async def enroll(self, subject: str, request: Request, tenant: Tenant) -> Response:
        """Enrol an image for a subject (201 ENROLLED; 200 DUPLICATE when already enrolled)."""
        return _result_response(
            await self._batched(await self._image_request(request, tenant, Op.ENROLL, subject)), True
        )

    @app.post("/v1/subjects/{subject}/verify", openapi_extra=_IMAGE_BODY)
    async def verify(self, subject: str, request: Request, tenant: Tenant) -> Response:
        """1:1: is this image the subject? MATCH / NO_MATCH with distance and probability."""
        return _result_response(
            await self._batched(await self._image_request(request, tenant, Op.VERIFY, subject))
        )

    @app.post("/v1/identify", openapi_extra=_IMAGE_BODY)
    async def identify(
        self,
        request: Request,
        tenant: Tenant,
        top_k: Annotated[int, Query(ge=1, le=MAX_TOP_K)] = DEFAULT_TOP_K,
        faces: Annotated[
            Literal["largest", "all"],
            Query(description="face models: `all` answers for every face of a group photo (`faces`)"),
        ] = "largest",
    ) -> Response:
        """1:N: the top-k subjects; MATCH names the best within the tenant's operating point, else
        UNKNOWN. With a face model and ``faces=all``, one answer per face found."""
        ask = await self._image_request(request, tenant, Op.IDENTIFY, top_k=top_k, all_faces=faces == "all")
        return _result_response(await self._batched(ask))

    @app.delete("/v1/subjects/{subject}")
    async def delete_subject(self, subject: str, tenant: Tenant) -> Response:
        """Erase a subject: every image in every model version, cached embeddings, stored results naming
        it and its enrolment-log records (404 if it has no enrolled image)."""
        try:
            check_name("subject", subject)
        except InputError as exc:
            raise ApiError.from_input(exc) from None
        served = await self._live()
        counts = await asyncio.to_thread(self._lifecycle.eraser.erase, [(tenant, subject)])
        if not counts[(tenant, subject)]:
            raise ApiError(404, "unknown-subject", f"subject {subject!r} has no enrolled images")
        req = ImageRequest(uuid.uuid4().hex, Op.DELETE, tenant=tenant, subject=subject)
        result = served.pipeline.matcher.deleted(req)
        await asyncio.to_thread(self._results.put_many, [result])
        self._observed([result], "http")
        return _result_response(result)

    @app.get("/v1/subjects")
    async def list_subjects(self, tenant: Tenant) -> dict[str, Any]:
        """Subjects of the tenant and how many images each has."""
        served = await self._live()
        counts = await asyncio.to_thread(served.gallery.subjects, tenant)
        subjects = [{"subject": s, "images": n} for s, n in counts.items()]
        return {"tenant": tenant, "model_version": served.version, "subjects": subjects}

    @app.get("/v1/tenants/{tenant}/policy")
    async def get_policy(self, tenant: NamedTenant) -> dict[str, Any]:
        """The tenant's operating points and the thresholds they map to for the live model."""
        policy = (await asyncio.to_thread(self._policies.read, [tenant]))[tenant]
        return await self._policy_body(tenant, policy)

    @app.put("/v1/tenants/{tenant}/policy")
    async def put_policy(self, tenant: NamedTenant, body: PolicyBody) -> dict[str, Any]:
        """Set the tenant's target FAR (verify) and/or FPIR (identify); every replica and ingest path
        applies it within a second. Values outside [1e-7, 0.5] are refused (422)."""
        current = (await asyncio.to_thread(self._policies.read, [tenant]))[tenant]
        policy = TenantPolicy(
            body.verify_far if body.verify_far is not None else current.verify_far,
            body.identify_fpir if body.identify_fpir is not None else current.identify_fpir,
        )
        await asyncio.to_thread(self._policies.write, tenant, policy)
        return await self._policy_body(tenant, policy)

    async def _policy_body(self, tenant: str, policy: TenantPolicy) -> dict[str, Any]:
        served = await self._live()
        matcher = served.pipeline.matcher
        size = await asyncio.to_thread(served.gallery.size, tenant)
        verify, identify = matcher.verify_policy(policy), matcher.identify_policy(policy, max(1, size))
        return {
            "tenant": tenant,
            "verify_far": policy.verify_far,
            "identify_fpir": policy.identify_fpir,
            "model_version": served.version,
            "verify": {"threshold": verify.threshold, "min_probability": verify.min_probability},
            "identify": {
                "gallery_size": size,
                "threshold": identify.threshold,
                "min_probability": identify.min_probability,
            },
        }

    @app.get("/v1/results/{request_id}")
    async def get_result(self, request_id: str, tenant: Tenant) -> Response:
        """A stored result by request id (HTTP or stream); another tenant's result is not found."""
        result = await asyncio.to_thread(self._results.get, tenant, request_id)
        if result is None or result.tenant != tenant:
            raise ApiError(404, ApiReason.NOT_FOUND, f"no result {request_id[:64]!r} for this tenant")
        return Response(result_to_json(result), media_type="application/json")
