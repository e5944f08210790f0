"""uvicorn's HTTP protocol with a deadline for each request to arrive whole.

uvicorn closes a keep-alive connection that stays idle, but not one that never sends a request,
nor one that trickles its headers or body a byte at a time: each byte restarts its clock. A few
hundred such clients hold every connection the service allows. Here each request, headers and
body, must arrive within `seconds` of the connection opening or of the previous answer; past it
the connection is closed (a request half read sees the client gone).
"""

from __future__ import annotations

from collections.abc import Callable

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def with_deadline(seconds: float, on_timeout: Callable[[], None]) -> type[HttpToolsProtocol]:
    """The protocol class to hand to uvicorn (`http=`); `on_timeout` is called for every
    connection closed for being slow."""

    class Deadline(HttpToolsProtocol):
        _timer = None
        _idle = False  # answered, and no next request begun: keep-alive's timer closes it

        def on_message_begin(self) -> None:
            self._idle = False
            super().on_message_begin()

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def on_message_complete(self) -> None:  # the request's last byte is in
            self._disarm()
            super().on_message_complete()

        def on_response_complete(self) -> None:  # the next request's clock starts
            super().on_response_complete()
            self._idle = True
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._timer = self.loop.call_later(seconds, self._expired)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _expired(self) -> None:
            self._timer = None
            if not self.transport.is_closing():
                if not self._idle:
                    on_timeout()
                self.transport.close()

    return Deadline
