"""An AWS Polly stand-in: the REST-JSON `POST /v1/speech` (SynthesizeSpeech) as
PROVIDERS-SPEECH.md section 2 documents it.

Every request must carry a SigV4 `Authorization` header scoped to service `polly` in the
stand-in's region, with `x-amz-date` matching the credential scope's date, and `host` and
`x-amz-date` among the signed headers. The signature is recomputed with the secret of the
stand-in's access key, so a wrong secret fails as it would at AWS. Errors follow the rest-json
convention botocore parses: the status, `x-amzn-ErrorType: <Code>` and `{"message": ...}`. A
good request is answered with `audio/pcm` (PCM16 mono, no header), streamed chunked.

    standin = PollyStandin()                      # access key AKIDSTANDIN, secret DEFAULT_SECRET
    base_url, stop = start_standin(standin)       # AWS_ENDPOINT_URL_POLLY
    standin.knobs.fail_next(429); standin.signed_by[-1]
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import uuid
from typing import Any
from urllib.parse import parse_qsl, quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tests.helpers.standins.common import Knobs, signal_samples, sine

DEFAULT_ACCESS_KEY = "AKIDSTANDIN"
DEFAULT_SECRET = "standin/secret+key"
PATH = "/v1/speech"
# A few voices: the engines each supports (a plausible subset of DescribeVoices), its signal.
VOICES: dict[str, tuple[frozenset[str], float]] = {
    "Joanna": (frozenset({"standard", "neural", "generative", "long-form"}), 440.0),
    "Matthew": (frozenset({"standard", "neural", "generative"}), 550.0),
    "Danielle": (frozenset({"neural", "generative", "long-form"}), 660.0),
    "Ruth": (frozenset({"neural", "generative", "long-form"}), 770.0),
    "Amy": (frozenset({"standard", "neural", "generative"}), 880.0),
    "Brian": (frozenset({"standard", "neural"}), 990.0),
}
ENGINES = ("standard", "neural", "long-form", "generative")
FORMATS = ("mp3", "ogg_vorbis", "pcm", "json")
MAX_TEXT = 6000
MAX_SKEW = dt.timedelta(minutes=15)
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<akid>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/,\s]+)/"
    r"(?P<service>[^/,\s]+)/(?P<term>[^/,\s]+),\s*SignedHeaders=(?P<signed>[a-z0-9;_.-]+),"
    r"\s*Signature=(?P<signature>[0-9a-f]{64})"
)
_STOCK = {
    400: ("ValidationException", "Request failed validation."),
    429: ("ThrottlingException", "Rate exceeded"),
    500: ("ServiceFailureException", "An unknown condition has caused a service failure."),
    503: ("ServiceUnavailableException", "Service is unavailable."),
}


def error(status: int, code: str, message: str) -> Response:
    headers = {"x-amzn-ErrorType": code, "x-amzn-RequestId": str(uuid.uuid4())}
    return JSONResponse({"message": message}, status_code=status, headers=headers)


def signal(voice: str, text: str, rate: int = 16000) -> bytes:
    """The PCM16 the stand-in speaks for (voice, text) at `rate`."""
    return sine(VOICES[voice][1], rate, signal_samples(text, rate)).astype("<i2").tobytes()


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def sigv4_signature(secret: str, date: str, region: str, service: str, to_sign: str) -> str:
    key = _hmac(b"AWS4" + secret.encode(), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def canonical_request(request: Request, signed: list[str], payload_hash: str) -> str:
    path = quote(request.url.path, safe="/~")
    query = "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
        for k, v in sorted(parse_qsl(request.url.query, keep_blank_values=True))
    )
    headers = "".join(
        f"{name}:{','.join(' '.join(v.split()) for v in request.headers.getlist(name))}\n"
        for name in signed
    )
    return "\n".join([request.method, path, query, headers, ";".join(signed), payload_hash])


class PollyStandin:
    """An ASGI app; `knobs` control failures and timing, `signed_by` lists the access key of
    every request whose signature checked out."""

    def __init__(self, credentials: dict[str, str] | None = None, region: str = "us-east-1"):
        self.credentials = credentials or {DEFAULT_ACCESS_KEY: DEFAULT_SECRET}  # key id: secret
        self.region = region
        self.knobs = Knobs()
        self.signed_by: list[str] = []
        self._app = Starlette(routes=[Route(PATH, self._speech, methods=["POST"])])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)

    async def _speech(self, request: Request) -> Response:
        recorded = await self.knobs.record(request)
        if (denied := self._authenticate(request, recorded.body)) is not None:
            return denied
        plan = self.knobs.plan()
        if plan.fail is not None:
            status, message = plan.fail
            code, stock = _STOCK.get(status, ("ServiceFailureException", "Request failed."))
            return error(status, code, message or stock)
        body = recorded.json
        if not isinstance(body, dict):
            return error(400, "SerializationException", "Start of structure or map found.")
        checked = self._check(body)
        if isinstance(checked, Response):
            return checked
        voice, text, rate = checked
        await self.knobs.before_headers()
        headers = {
            "x-amzn-RequestCharacters": str(len(text)),
            "x-amzn-RequestId": str(uuid.uuid4()),
        }
        return StreamingResponse(
            self.knobs.stream(signal(voice, text, rate), plan),
            media_type="audio/pcm",
            headers=headers,
        )

    def _authenticate(self, request: Request, raw: bytes) -> Response | None:
        """None for a well-formed, correctly scoped and correctly signed request."""
        auth = request.headers.get("authorization")
        if not auth:
            return error(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
        m = _AUTH.fullmatch(auth.strip())
        if m is None:
            return error(
                403,
                "IncompleteSignatureException",
                "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' "
                "parameters (AWS4-HMAC-SHA256).",
            )
        if m["term"] != "aws4_request":
            return error(
                403,
                "IncompleteSignatureException",
                "Credential should be scoped with a valid terminator: 'aws4_request'.",
            )
        if m["service"] != "polly":
            return error(
                403,
                "InvalidSignatureException",
                "Credential should be scoped to correct service: 'polly'.",
            )
        if m["region"] != self.region:
            return error(
                403,
                "InvalidSignatureException",
                f"Credential should be scoped to a valid region, not '{m['region']}'.",
            )
        amz_date = request.headers.get("x-amz-date", "")
        try:
            when = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
        except ValueError:
            return error(
                403,
                "IncompleteSignatureException",
                "Authorization header requires existence of either a 'X-Amz-Date' or a "
                "'Date' header.",
            )
        if amz_date[:8] != m["date"]:
            return error(
                403,
                "InvalidSignatureException",
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of "
                f"date from HTTP: '{m['date']}' != '{amz_date[:8]}'.",
            )
        if abs(dt.datetime.now(dt.UTC) - when) > MAX_SKEW:
            return error(403, "InvalidSignatureException", "Signature expired.")
        signed = m["signed"].split(";")
        if "host" not in signed or "x-amz-date" not in signed or signed != sorted(signed):
            return error(
                403,
                "InvalidSignatureException",
                "'Host' and 'X-Amz-Date' must be among the SignedHeaders, sorted.",
            )
        secret = self.credentials.get(m["akid"])
        if secret is None:
            return error(
                403,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        body_hash = hashlib.sha256(raw).hexdigest()
        if request.headers.get("x-amz-content-sha256", body_hash) != body_hash:
            return error(
                400,
                "XAmzContentSHA256Mismatch",
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            )
        scope = f"{m['date']}/{m['region']}/{m['service']}/aws4_request"
        creq = canonical_request(request, signed, body_hash)
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(creq.encode()).hexdigest()]
        )
        expected = sigv4_signature(secret, m["date"], m["region"], m["service"], to_sign)
        if not hmac.compare_digest(expected, m["signature"]):
            return error(
                403,
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you "
                "provided. Check your AWS Secret Access Key and signing method. Consult the "
                "service documentation for details.",
            )
        self.signed_by.append(m["akid"])
        return None

    @staticmethod
    def _check(body: dict[str, Any]) -> Response | tuple[str, str, int]:
        """(voice, text, sample rate) of a valid SynthesizeSpeech, else Polly's error."""
        for name in ("OutputFormat", "Text", "VoiceId"):
            if not isinstance(body.get(name), str):
                member = name[0].lower() + name[1:]
                return error(
                    400,
                    "ValidationException",
                    f"1 validation error detected: Value null at '{member}' failed to satisfy "
                    "constraint: Member must not be null",
                )
        voice, text, fmt = body["VoiceId"], body["Text"], body["OutputFormat"]
        engine = body.get("Engine", "standard")
        for member, value, allowed in (
            ("voiceId", voice, sorted(VOICES)),
            ("outputFormat", fmt, FORMATS),
            ("engine", engine, ENGINES),
        ):
            if value not in allowed:
                return error(
                    400,
                    "ValidationException",
                    f"1 validation error detected: Value '{value}' at '{member}' failed to "
                    f"satisfy constraint: Member must satisfy enum value set: "
                    f"[{', '.join(allowed)}]",
                )
        if engine not in VOICES[voice][0]:
            return error(
                400,
                "EngineNotSupportedException",
                f"This voice does not support the selected engine: {engine}",
            )
        if body.get("TextType", "text") not in ("text", "ssml"):
            return error(400, "ValidationException", "Invalid TextType.")
        if len(text) > MAX_TEXT:
            return error(
                400,
                "TextLengthExceededException",
                f"Maximum text length has been exceeded (max {MAX_TEXT}).",
            )
        if fmt != "pcm":
            return error(400, "ValidationException", f"The stand-in renders pcm only, not {fmt}.")
        rate = body.get("SampleRate", "16000")
        if rate not in ("8000", "16000"):  # a string in the API, even though it is a number
            return error(
                400, "InvalidSampleRateException", f"Invalid sample rate {rate!r} for pcm."
            )
        return voice, text, int(rate)
