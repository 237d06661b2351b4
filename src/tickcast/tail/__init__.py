"""``tickcast tail``: a terminal client for a tickcast server's ticks, trades, candles and
order books.

On a terminal it draws live tables; in a pipe or a file it prints one line per tick, trade,
candle or book update, plain or JSON. The pieces without I/O are plain objects tested with
plain calls: ``protocol`` (the ``/ws`` and ``/sse`` URLs, message decoding, the SSE parser),
``failures`` (one line saying why a connection failed), ``subscription`` (the symbols and
streams asked for, less those the server refused), ``formatting`` (prices, volumes, ages),
``columns`` (tables that fit the terminal), ``tape`` (trades), ``candles`` (klines),
``localbook`` (the books kept from ``@book`` and ``@depth``), ``ladder`` (their ladders and
lines), ``table`` (``TailState``, the live screen) and ``lines`` (``TickLines``, plain and
JSON lines); ``view`` is what the driver reports to. ``driver`` holds ``run_tail``, the thin
asyncio driver around them: it reads WebSocket messages or SSE events and hands them to a
view (the table, or the line printer).

May import anything but ``cli``: it is a client of the server's public endpoints.
"""

from tickcast.tail.driver import run_tail
from tickcast.tail.lines import OutputClosed
from tickcast.tail.subscription import asked_names
from tickcast.tail.view import OutputFormat

__all__ = ["OutputClosed", "OutputFormat", "asked_names", "run_tail"]
