"""Model lifecycle: the enrolment log, re-index by replay, the version registry and switch, erasure."""
