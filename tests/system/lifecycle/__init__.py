"""System tests of the model lifecycle: enrolment log, re-index, switch, erasure (Kafka, Milvus, Redis)."""
