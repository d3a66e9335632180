"""Property-based fuzzing of the real server against its own OpenAPI schema (schemathesis).

Every generated request, valid (positive mode) or schema-violating (negative mode), must get a documented status code with a body that
matches the schema, and never a 5xx. Driven through Hypothesis directly (one strategy per API
operation) rather than schemathesis' pytest plugin, so it runs against the module's live server.
"""

from __future__ import annotations

import os

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.checks import negative_data_rejection  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_conforms_to_its_schema(server, auth, mode):
    base, *_ = server
    schema = schemathesis.openapi.from_url(base + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/recommend", "/v1/similar-items", "/v1/events"}
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        # the same cases on every CI run; LIVEREC_FUZZ_RANDOM=1 explores new ones
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None,
                  derandomize="LIVEREC_FUZZ_RANDOM" not in os.environ)
        def conforms(case):
            response = case.call(headers=auth)
            # 413 (body over the size limit) is a rejection too, one schemathesis does not list
            excluded = [negative_data_rejection] if response.status_code == 413 else []
            case.validate_response(response, excluded_checks=excluded)

        try:
            conforms()
        except Unsatisfiable:  # an operation without inputs (e.g. /healthz) has no invalid requests
            assert mode is GenerationMode.NEGATIVE, operation.path
