"""When the environment asks for traces (the standard OTEL_* variables), and when it does not."""

from __future__ import annotations

import pytest

from app.observability.tracing import tracing_requested

ENDPOINT = "http://collector:4318"


@pytest.mark.parametrize(
    "environ",
    [
        pytest.param({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, id="endpoint"),
        pytest.param({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{ENDPOINT}/v1/traces"}, id="traces endpoint"),
        pytest.param({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_SDK_DISABLED": "false"}, id="not disabled"),
        pytest.param({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_TRACES_EXPORTER": "otlp"}, id="otlp exporter"),
    ],
)
def test_an_endpoint_turns_tracing_on(environ: dict[str, str]) -> None:
    assert tracing_requested(environ)


@pytest.mark.parametrize(
    "environ",
    [
        pytest.param({}, id="nothing"),
        pytest.param({"OTEL_SERVICE_NAME": "chitram-api", "OTEL_BSP_SCHEDULE_DELAY": "100"}, id="no endpoint"),
        # Compose passes `${OTEL_EXPORTER_OTLP_ENDPOINT:-}`: an unset variable arrives empty.
        pytest.param({"OTEL_EXPORTER_OTLP_ENDPOINT": " "}, id="blank endpoint"),
        pytest.param({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_SDK_DISABLED": "TRUE"}, id="sdk disabled"),
        pytest.param({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_TRACES_EXPORTER": "none"}, id="no exporter"),
    ],
)
def test_without_an_endpoint_or_when_disabled_tracing_stays_off(environ: dict[str, str]) -> None:
    assert not tracing_requested(environ)
