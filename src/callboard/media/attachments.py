"""What plugs into the media engine: endpoints (a leg's transport), taps and analysers that
watch a leg or room on the clock, sources that add audio, and the handle that detaches them.
Everything here runs on the media clock: implementations copy, enqueue and return."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from callboard.media.g711 import G711Law


class MediaEndpoint(Protocol):
    """A transport's side of a leg, as the media clock sees it.

    Frames are 20 ms of mono int16 at `sample_rate`, which may change between ticks (a
    re-INVITE to another codec). write_frame must not keep `pcm`: the array is reused.
    An endpoint whose `law` is set is a G711Endpoint as well."""

    @property
    def sample_rate(self) -> int: ...

    @property
    def law(self) -> G711Law | None: ...

    def read_frame(self) -> np.ndarray | None: ...

    def write_frame(self, pcm: np.ndarray) -> None: ...

    def prefer_rate(self, rate: int) -> None:
        """The engine mixes this endpoint's audio at `rate` (its room's). An endpoint whose
        codec can code at that rate moves `sample_rate` there, so the engine converts
        nothing; the others ignore it."""
        ...

    @property
    def forward_key(self) -> str | None:
        """Set (the codec's name) on an endpoint whose packets another endpoint with the
        same key can send on as they are: then it is a ForwardingEndpoint too."""
        ...


class ForwardingEndpoint(MediaEndpoint, Protocol):
    """An endpoint that can pass packets to and from another on the same codec, so that a
    leg that hears exactly one other leg is sent that leg's packets, not re-encoded."""

    @property
    def last_payload(self) -> bytes | None:
        """The packet this tick's read_frame was decoded from, when it was exactly one
        whole frame of it; else None."""
        ...

    def forward(self, payload: bytes) -> None:
        """write_frame for another endpoint's `last_payload` with the same forward_key."""
        ...


class G711Endpoint(MediaEndpoint, Protocol):
    """An endpoint on G.711 whose frames the engine codes in bulk with the other legs'."""

    def read_encoded(self) -> np.ndarray | bytes | None:
        """read_frame, except that a frame may come back still encoded (bytes, exactly one
        frame of `law`)."""
        ...

    def write_encoded(self, payload: bytes) -> None:
        """write_frame for a frame already encoded with `law`."""
        ...


class LegTap(Protocol):
    """Something that records or streams a participant's audio (recorders, STT)."""

    def feed(self, received: np.ndarray | None, heard: np.ndarray, rate: int) -> None:
        """This tick's frames at the participant's mix rate `rate` (its room's; it changes
        when the leg moves to a room of another rate): what the participant said (None
        before its media arrives; given even while muted) and what it hears. Runs on the
        media clock: copy and enqueue, never block. The arrays are reused after the call."""
        ...


class RoomTap(Protocol):
    """Something that records or streams a whole room."""

    def feed(
        self, mix: np.ndarray, members: list[tuple[str, np.ndarray | None]], rate: int
    ) -> None:
        """This tick's room mix (everyone not muted, plus room playback) and each member's
        own input frame, in a stable order, at the room's rate. Same rules as LegTap.feed."""
        ...


class Analyser(Protocol):
    """Something that listens to what a participant says, frame by frame (speaking detection;
    later answering-machine and barge-in detection)."""

    def analyse(self, frame: np.ndarray, rate: int, level_dbfs: float, muted: bool) -> None:
        """This tick's input of the participant at its mix rate `rate`, its level (measured
        once for every analyser, in bulk with the other legs where it can be), and whether
        the leg is muted. Called only on ticks with input. Runs on the media clock: keep it
        short and never block; `frame` is reused after the call."""
        ...


class AttachmentHandle:
    """What an engine `add_*` method returns: `remove()` takes the attachment off again (a
    no-op once the participant or room is gone)."""

    __slots__ = ("_item", "_items")

    def __init__(self, items: list[Any], item: object) -> None:
        self._items = items
        self._item = item

    @property
    def attached(self) -> bool:
        return self._item in self._items

    def remove(self) -> None:
        if self._item in self._items:
            self._items.remove(self._item)


class FrameSource(Protocol):
    """Something that adds audio to what a leg or room hears (tones, playback), at 16 kHz."""

    def next_frame(self) -> np.ndarray | None:
        """The next 20 ms at 16 kHz, or None once finished."""
        ...
