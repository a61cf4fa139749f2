"""Names of the Ray Serve deployments, for the app that defines them and the clients that look them up.

Ingest workers find the pipeline with ``serve.get_deployment_handle(PIPELINE_DEPLOYMENT, app_name=…)``
without importing the app (and through it torch, FastAPI and the Milvus client).
"""

PIPELINE_DEPLOYMENT = "Pipeline"
