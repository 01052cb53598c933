"""SDP bodies shaped like the ones real peers send (hand-written, not captured).

Each is written with "\n" and converted to CRLF by ``crlf`` where the peer sends CRLF, so
the samples stay readable. Details that matter to the parser and negotiator are kept:
session names, o= usernames, attribute zoo, IPv6, rtcp forms, hold re-INVITEs.
"""

from __future__ import annotations


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


# SIPp's built-in uac scenario: one static codec, no rtpmap for anything but PCMU.
SIPP_UAC = crlf(
    """v=0
o=user1 53655765 2353687637 IN IP4 127.0.1.1
s=-
c=IN IP4 127.0.1.1
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
"""
)

# SIPp uac_pcap-style scenario file, as some people write them: LF only, trailing blanks,
# telephone-event with a partial event list.
SIPP_PCAP_LF = "\n".join(
    [
        "v=0",
        "o=user1 53655765 2353687637 IN IP4 10.0.0.5 ",
        "s=- ",
        "c=IN IP4 10.0.0.5",
        "t=0 0",
        "m=audio 6002 RTP/AVP 8 101",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-11,16",
        "",
    ]
).encode()

BARESIP_OFFER = crlf(
    """v=0
o=- 1490289154 1184427744 IN IP4 192.168.1.20
s=-
c=IN IP4 192.168.1.20
t=0 0
m=audio 10236 RTP/AVP 96 0 8 101
b=AS:93
a=rtpmap:96 opus/48000/2
a=fmtp:96 stereo=1;sprop-stereo=1
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv
a=label:1
a=ssrc:1289735049 cname:b5b1b3c0-5f2d-4a7e-9b4b-0a6d3c2e1f00
a=rtcp-rsize
a=ptime:20
"""
)

# Asterisk chan_sip: "root" username, long s=, no rtpmap-less formats, silenceSupp.
ASTERISK_OFFER = crlf(
    """v=0
o=root 1819131539 1819131539 IN IP4 203.0.113.5
s=Asterisk PBX 16.28.0
c=IN IP4 203.0.113.5
t=0 0
m=audio 17294 RTP/AVP 0 8 9 3 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:9 G722/8000
a=rtpmap:3 GSM/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=silenceSupp:off - - - -
a=ptime:20
a=maxptime:150
a=sendrecv
"""
)

# The same call put on hold by Asterisk (music on hold is local, so it just stops receiving).
ASTERISK_HOLD = crlf(
    """v=0
o=root 1819131539 1819131540 IN IP4 203.0.113.5
s=Asterisk PBX 16.28.0
c=IN IP4 203.0.113.5
t=0 0
m=audio 17294 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendonly
"""
)

FREESWITCH_OFFER = crlf(
    """v=0
o=FreeSWITCH 1706512345 1706512346 IN IP4 198.51.100.7
s=FreeSWITCH
c=IN IP4 198.51.100.7
t=0 0
m=audio 23456 RTP/AVP 102 9 0 8 103 101
a=rtpmap:102 opus/48000/2
a=fmtp:102 useinbandfec=1; maxaveragebitrate=30000; maxplaybackrate=48000; ptime=20; minptime=10
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:103 telephone-event/48000
a=fmtp:103 0-16
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendrecv
a=rtcp:23457 IN IP4 198.51.100.7
"""
)

# A DTLS certificate fingerprint is 32 colon-separated bytes: too long for one source line.
FINGERPRINT = (
    "sha-256 49:66:12:17:0D:1C:91:AE:57:4C:C6:98:55:63:08:1C"
    ":E8:6F:C3:A8:A6:5A:0A:8B:B8:4E:14:10:1E:0D:CE:5B"
)

# Chrome: everything encrypted and bundled; nothing here is usable by a plain RTP leg.
CHROME_WEBRTC_OFFER = crlf(
    f"""v=0
o=- 4611731400430051336 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1
a=extmap-allow-mixed
a=msid-semantic: WMS 6b3c1b8f-7e8c-4f47-9a0e-2f4d6c2b7e11
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=candidate:1467250027 1 udp 2122260223 192.168.0.196 46243 typ host generation 0
a=ice-ufrag:Oyef
a=ice-pwd:7J3nR1sd5J0bZq4pT8y2Xw9c
a=ice-options:trickle
a=fingerprint:{FINGERPRINT}
a=setup:actpass
a=mid:0
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=sendrecv
a=msid:6b3c1b8f-7e8c-4f47-9a0e-2f4d6c2b7e11 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:63 red/48000/2
a=fmtp:63 111/111
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:13 CN/8000
a=rtpmap:110 telephone-event/48000
a=rtpmap:126 telephone-event/8000
a=ssrc:3735928559 cname:kT3i8ZfC2pX6Lq0w
m=video 9 UDP/TLS/RTP/SAVPF 96 97
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:Oyef
a=ice-pwd:7J3nR1sd5J0bZq4pT8y2Xw9c
a=fingerprint:{FINGERPRINT}
a=setup:actpass
a=mid:1
a=sendrecv
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:96 VP8/90000
a=rtcp-fb:96 nack pli
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
"""
)

# Linphone over IPv6 with video: speex, G.729 without rtpmap, three telephone-event rates,
# session-level attributes.
LINPHONE_OFFER = crlf(
    """v=0
o=alice 3012 1418 IN IP6 2001:db8::10
s=Talk
c=IN IP6 2001:db8::10
t=0 0
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
a=record:off
m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100
a=rtpmap:96 opus/48000/2
a=fmtp:96 useinbandfec=1
a=rtpmap:97 speex/16000
a=fmtp:97 vbr=on
a=rtpmap:98 speex/8000
a=fmtp:98 vbr=on
a=fmtp:18 annexb=yes
a=rtpmap:101 telephone-event/48000
a=rtpmap:99 telephone-event/16000
a=rtpmap:100 telephone-event/8000
a=rtcp-fb:* trr-int 1000
a=rtcp-fb:* ccm tmmbr
m=video 9078 RTP/AVP 96 97
a=rtpmap:96 VP8/90000
a=rtpmap:97 H264/90000
a=fmtp:97 profile-level-id=42801F
a=rtcp-fb:* trr-int 1000
a=rtcp-fb:96 nack pli
"""
)

ALL_OFFERS = {
    "sipp-uac": SIPP_UAC,
    "sipp-pcap-lf": SIPP_PCAP_LF,
    "baresip": BARESIP_OFFER,
    "asterisk": ASTERISK_OFFER,
    "asterisk-hold": ASTERISK_HOLD,
    "freeswitch": FREESWITCH_OFFER,
    "chrome-webrtc": CHROME_WEBRTC_OFFER,
    "linphone": LINPHONE_OFFER,
}


def audio_offer(
    formats: str,
    *attributes: str,
    session: str = "",
    connection: str | None = "c=IN IP4 192.0.2.50",
    port: int = 30000,
    proto: str = "RTP/AVP",
) -> bytes:
    """A minimal one-stream offer for table tests: ``audio_offer("0 8", "a=sendonly")``."""
    lines = ["v=0", "o=peer 1 1 IN IP4 192.0.2.50", "s=-"]
    if connection is not None:
        lines.append(connection)
    lines.append("t=0 0")
    if session:
        lines.append(session)
    lines.append(f"m=audio {port} {proto} {formats}")
    lines.extend(attributes)
    return crlf("\n".join(lines) + "\n")
