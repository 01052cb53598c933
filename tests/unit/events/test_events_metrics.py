from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from callboard.events.metrics import CALL_DURATION_BUCKETS, Metrics


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, _ = metrics.render()
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_render_contains_labelled_series_after_calls() -> None:
    m = Metrics()
    m.leg_state("sip_outbound", "ringing")
    m.leg_state("sip_outbound", "connected")
    m.leg_state("sip_outbound", "ringing")
    m.leg_ended("sip_outbound", "remote_bye", answered_seconds=42.0, total_seconds=50.0)
    m.leg_ended("sip_inbound", "busy", answered_seconds=0.0, total_seconds=3.0)

    body, content_type = m.render()
    assert content_type.startswith("text/plain")
    text = body.decode()
    assert 'callboard_legs_total{state="ringing",type="sip_outbound"} 2.0' in text

    s = samples(m)
    assert s[("callboard_legs_total", (("state", "connected"), ("type", "sip_outbound")))] == 1
    reason = "callboard_disconnect_reasons_total"
    assert s[(reason, (("reason", "remote_bye"), ("type", "sip_outbound")))] == 1
    assert s[(reason, (("reason", "busy"), ("type", "sip_inbound")))] == 1

    answered = "callboard_call_duration_seconds"
    assert s[(answered + "_count", (("type", "sip_outbound"),))] == 1
    assert s[(answered + "_sum", (("type", "sip_outbound"),))] == 42.0
    # Never answered: no answered-duration observation for that type at all.
    assert (answered + "_count", (("type", "sip_inbound"),)) not in s

    total = "callboard_call_total_duration_seconds"
    assert s[(total + "_count", (("type", "sip_inbound"),))] == 1
    assert s[(total + "_sum", (("type", "sip_inbound"),))] == 3.0
    assert s[(total + "_bucket", (("le", "5.0"), ("type", "sip_inbound")))] == 1
    assert s[(total + "_bucket", (("le", "2.0"), ("type", "sip_inbound")))] == 0


def test_gauges_read_sources_at_scrape_time() -> None:
    m = Metrics()
    assert samples(m)[("callboard_active_legs", ())] == 0
    legs = [3]
    m.set_gauge_sources(lambda: legs[0], lambda: 2)
    s = samples(m)
    assert s[("callboard_active_legs", ())] == 3
    assert s[("callboard_active_rooms", ())] == 2
    legs[0] = 7
    assert samples(m)[("callboard_active_legs", ())] == 7


def test_failing_gauge_source_does_not_break_the_scrape() -> None:
    m = Metrics()

    def broken() -> int:
        raise RuntimeError("registry gone")

    m.set_gauge_sources(broken, lambda: 1)
    s = samples(m)
    assert s[("callboard_active_rooms", ())] == 1
    assert s[("callboard_active_legs", ())] != s[("callboard_active_legs", ())]  # NaN


def test_process_metrics_and_separate_registries() -> None:
    first, second = Metrics(), Metrics()  # no duplicate-registration error
    first.leg_state("webrtc", "connected")
    names = {name for name, _ in samples(second)}
    assert "process_cpu_seconds_total" in names
    assert "python_info" in names
    assert "callboard_legs_total" not in names  # the second registry saw nothing of the first


def test_buckets_span_one_second_to_two_hours() -> None:
    assert CALL_DURATION_BUCKETS[0] == 1
    assert CALL_DURATION_BUCKETS[-1] == 7200
    assert list(CALL_DURATION_BUCKETS) == sorted(set(CALL_DURATION_BUCKETS))
