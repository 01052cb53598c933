import subprocess
import sys

import pytest

from callboard.config import ConfigError, load_settings


def test_defaults_match_api_notes() -> None:
    s = load_settings({})
    assert (s.http_host, s.http_port) == ("0.0.0.0", 8080)
    assert s.sip_bind_ip == s.sip_listen_ip == "127.0.0.1"
    assert s.sip_port == 5060
    assert s.sip_host == "callboard"
    assert (s.rtp_port_min, s.rtp_port_max) == (10000, 20000)
    assert s.recording_dir == "/tmp/recordings"
    assert s.log_level == "info"
    assert s.s3_region == "us-east-1"
    assert s.tts_cache_enabled is False and s.tts_cache_dir == "/tmp/tts_cache"
    assert len(s.instance_id) == 36
    assert s.default_sample_rate == 16000
    assert s.inbound_ring_timeout == 60


def test_rooms_default_rate_and_the_inbound_ring_timeout() -> None:
    s = load_settings({"DEFAULT_SAMPLE_RATE": "48000", "INBOUND_RING_TIMEOUT": "0"})
    assert (s.default_sample_rate, s.inbound_ring_timeout) == (48000, 0)


def test_listen_ip_follows_bind_ip() -> None:
    s = load_settings({"SIP_BIND_IP": "10.1.2.3"})
    assert s.sip_listen_ip == "10.1.2.3"
    s = load_settings({"SIP_BIND_IP": "10.1.2.3", "SIP_LISTEN_IP": "0.0.0.0"})
    assert s.sip_listen_ip == "0.0.0.0"


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"SIP_PORT": "abc"}, "SIP_PORT"),
        ({"SIP_PORT": "70000"}, "SIP_PORT"),
        ({"HTTP_ADDR": "nonsense"}, "HTTP_ADDR"),
        ({"HTTP_ADDR": "1.2.3.4:99999"}, "HTTP_ADDR"),
        ({"SIP_BIND_IP": "not-an-ip"}, "SIP_BIND_IP"),
        ({"LOG_LEVEL": "chatty"}, "LOG_LEVEL"),
        ({"RTP_PORT_MIN": "20000", "RTP_PORT_MAX": "10000"}, "RTP_PORT_MAX"),
        ({"WEBHOOK_URL": "ftp://x"}, "WEBHOOK_URL"),
        ({"TTS_CACHE_ENABLED": "maybe"}, "TTS_CACHE_ENABLED"),
        ({"ICE_SERVERS": "http://stun"}, "ICE_SERVERS"),
        ({"DEFAULT_SAMPLE_RATE": "44100"}, "DEFAULT_SAMPLE_RATE"),
        ({"DEFAULT_SAMPLE_RATE": "abc"}, "DEFAULT_SAMPLE_RATE"),
        ({"INBOUND_RING_TIMEOUT": "-1"}, "INBOUND_RING_TIMEOUT"),
    ],
)
def test_invalid_values_name_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert str(info.value).startswith(name)


def test_invalid_value_exits_nonzero_with_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "callboard"],
        env={"SIP_PORT": "x", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "SIP_PORT" in lines[0]
