"""The ``tickcast`` command: serve, sim-exchange, record, tail, bench."""

from __future__ import annotations

try:
    import argparse
    import asyncio
    import contextlib
    import difflib
    import logging
    import os
    import sys
    import time
    import types
    import typing
    from collections.abc import Iterable, Sequence
    from dataclasses import dataclass
    from pathlib import Path
    from typing import IO, NoReturn

    import orjson
    from dotenv import dotenv_values
    from pydantic import ValidationError
    from pydantic.fields import FieldInfo

    from tickcast import __version__
    from tickcast.messages.tick import SourceLabel
    from tickcast.settings import (
        DEFAULT_SYMBOLS,
        Settings,
        dotenv_origins,
        setting_errors,
        unknown_variables,
    )
except KeyboardInterrupt:
    # Ctrl-C while the command is still loading (a second on a cold start) ends it as
    # quietly as Ctrl-C later on: status 130, no traceback of the import under way. At
    # once, without the interpreter's clean-up: a native extension cut off in the middle
    # of its initialisation can crash it, and nothing has been started or written yet.
    import os as _os

    _os._exit(130)

log = logging.getLogger("tickcast")

# ``tail.ladder.DEFAULT_LEVELS``, said here too: the parser is built without importing
# the tail (and rich) for every command.
DEFAULT_LADDER_LEVELS = 10


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # Reported by the command they were given to, with its usage, not the top level's.
        owner: CommandParser = getattr(args, "command_parser", parser)
        owner.unrecognized(extra)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    handler: typing.Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


class CommandParser(argparse.ArgumentParser):
    """argparse's parser, whose errors are two lines: the error, then the usage in short
    with where the full list is, instead of a usage that lists every flag (serve has 40)."""

    def error(self, message: str) -> NoReturn:
        usage = " ".join(self.format_usage().split())
        if len(usage) > 100:
            usage = f"usage: {self.prog} [FLAG ...]"
        self.exit(2, f"{self.prog}: error: {message}\n{usage}; see {self.prog} --help\n")

    def unrecognized(self, extra: Sequence[str]) -> NoReturn:
        """Refuse arguments this command does not take, with the closest flag for one that
        looks misspelt (``--prot``: did you mean ``--port``?)."""
        flags = [o for action in self._actions for o in action.option_strings]
        first = extra[0]
        word = first.partition("=")[0]
        close = difflib.get_close_matches(word, flags, n=1) if word.startswith("--") else []
        hint = f": did you mean {close[0]}?" if close else ""
        noun = "argument" if len(extra) == 1 else "arguments"
        self.error(f"unrecognized {noun}: {' '.join(extra)}{hint}")


def build_parser() -> CommandParser:
    parser = CommandParser(prog="tickcast", description="Real-time market-data fan-out server.")
    parser.add_argument("--version", action="version", version=f"tickcast {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the server",
        description="Run the server. Every flag also reads TICKCAST_<NAME> and .env; "
        "a flag given on the command line wins.",
        formatter_class=SettingsHelpFormatter,
    )
    add_settings_flags(serve)
    serve.set_defaults(command_parser=serve, handler=cmd_serve)

    sim = commands.add_parser("sim-exchange", help="run the simulated Binance exchange")
    sim.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    sim.add_argument("--port", type=int, default=9443, help="port (default 9443; 0 = any)")
    sim.add_argument("--seed", type=int, default=1, help="random-walk seed (default 1)")
    sim.add_argument("--rate", type=float, default=1.0, help="events/s per symbol (default 1)")
    sim.add_argument(
        "--trade-rate",
        type=float,
        default=None,
        help="trades/s per symbol, apart from --rate (default: one trade per event); "
        "POST /_sim/burst?symbol=&count=&seconds= adds a burst",
    )
    sim.add_argument(
        "--symbols",
        default=",".join(DEFAULT_SYMBOLS),
        help="comma separated, or a count N (e.g. 2000): N plausible symbols across quote "
        "assets, the ten defaults first, a few not trading; "
        "POST /_sim/listing?symbol=&status=TRADING|BREAK lists or delists one",
    )
    sim.add_argument("--ping-interval", type=float, default=20.0, help="seconds (default 20)")
    sim.add_argument(
        "--fault-schedule",
        default="",
        help="comma list of KIND@SECONDS[+DURATION]; kinds: drop, close1000, close1001, "
        "close1008, stall, shutdown, garbage, burst, latency, depth_gap, rest_429, rest_down",
    )
    sim.add_argument(
        "--rest-weight-limit",
        type=int,
        default=6000,
        help="REST weight an address may use per window before a 429 (default 6000)",
    )
    sim.add_argument(
        "--rest-weight-window",
        type=float,
        default=60.0,
        help="seconds of that window; Retry-After points to its end (default 60)",
    )
    sim.set_defaults(command_parser=sim, handler=cmd_sim_exchange)

    record = commands.add_parser(
        "record",
        help="capture the upstream to JSONL",
        description="Record the upstream market data (Binance, the simulated exchange, or "
        "whichever --source auto is serving) to a JSONL file, one line per upstream frame: "
        '{"t": receive time in Unix ms, "source": "binance" or "sim", "frame": the frame '
        "as received}. Stops after --seconds, or on Ctrl-C. Replay the file with "
        "`tickcast serve --source replay:FILE` (played in a loop at the recorded pace; "
        "--replay-speed changes it).",
        formatter_class=SettingsHelpFormatter,
    )
    record.add_argument("--out", required=True, type=Path, help="JSONL file to write")
    record.add_argument("--seconds", type=float, default=None, help="stop after N seconds")
    add_settings_flags(record, only=("source", "symbols", "book", "binance_url", "sim_rate"))
    record.set_defaults(command_parser=record, handler=cmd_record)

    tail = commands.add_parser(
        "tail",
        help="live ticks, trades, candles and order books of a running server: a table, or "
        "lines in a pipe",
        description="Follow a running server's ticks, trades, candles and order books. Name "
        "symbols (BTCUSDT: its ticks) or streams (BTCUSDT@trades: its trades; "
        "BTCUSDT@kline_1m: its 1-minute candles, the interval as Binance spells it, 1M "
        "being a month; BTCUSDT@book: its order book's top levels; BTCUSDT@depth: its whole "
        "book, kept here from the diffs), mixed; the server's /streams lists what it "
        "serves. On a terminal: a live table of ticks whose columns (symbol, price, change, "
        "then bid, ask, spread, high, low, volume, age, trend) fill the terminal's width; "
        "the newest trades (▲ buy, ▼ sell: the taker's side), newest on top; each candle "
        "stream's open candle under its last closed ones; each book as a ladder, asks "
        "above the spread and bids below it (--levels per side), with its update id and "
        "age. In a pipe or a file: one line per tick, flushed at once; one per trade (time "
        "stream side price qty id=ID); one per update of an open candle, ending 'live', "
        "and one per closed candle, ending 'closed' (grep ' closed$' keeps those); one per "
        "book update (time stream bid PRICE QTY ask PRICE QTY spread ABS BPSbps id=ID, and "
        "for @depth levels=BIDS/ASKS crc=CRC32 of the whole book). Trades the server "
        "dropped because this client fell behind, and a book that is not whole (syncing, "
        "broken, or a diff missing: nothing is shown from it until the next whole book), "
        "are reported on stderr. Reconnects on its own; a wrong token or URL, or nothing "
        "asked for being served, ends it with status 1.",
    )
    tail.add_argument(
        "symbols",
        nargs="*",
        metavar="SYMBOL|STREAM",
        help="symbols or stream names (SYMBOL@trades, SYMBOL@kline_<interval>, SYMBOL@book, "
        "SYMBOL@depth); default: the server's symbols",
    )
    tail.add_argument(
        "--url", default="http://localhost:8000", help="server base URL (default %(default)s)"
    )
    tail.add_argument(
        "--format",
        choices=("plain", "json", "table"),
        default=None,
        help="plain: one line per tick (time symbol price change bid ask), trade, candle or "
        "book update; "
        "json: each message as one JSON object per line; table: live tables (default: "
        "table on a terminal, plain otherwise)",
    )
    tail.add_argument(
        "--token",
        default=None,
        help="bearer token for a server started with one (default: $TICKCAST_TOKEN)",
    )
    tail.add_argument(
        "--token-file",
        type=Path,
        default=None,
        help="read the token from this file at each connect, and again when the server "
        "says it is expiring (sent as a refresh when it changed)",
    )
    tail.add_argument("--sse", action="store_true", help="use SSE instead of WebSocket")
    tail.add_argument(
        "--seconds", type=float, default=None, help="stop after N seconds (default: Ctrl-C)"
    )
    tail.add_argument(
        "--levels",
        type=_positive_int,
        default=DEFAULT_LADDER_LEVELS,
        metavar="N",
        help="price levels per side of a book's ladder on a terminal (default %(default)s)",
    )
    tail.set_defaults(command_parser=tail, handler=cmd_tail)

    token = commands.add_parser(
        "token",
        help="print a signed client token (JWT) for a server with TICKCAST_JWT_SECRET or a JWKS",
        description="Print a signed token for one client: HS256 with the server's "
        "TICKCAST_JWT_SECRET (environment or .env), or, with --key, RS256, ES256 or EdDSA "
        "by the private key's type (its public key in the server's TICKCAST_JWT_JWKS, "
        "under --kid). aud and iss are the server's TICKCAST_JWT_AUDIENCE and "
        "TICKCAST_JWT_ISSUER unless given.",
    )
    token.add_argument("--sub", required=True, help="the client (subject)")
    token.add_argument(
        "--streams",
        default=None,
        help="comma-separated stream patterns it may read (BTCUSDT@*, *@ticker, !tickers); "
        "default: every stream",
    )
    token.add_argument("--ttl", default="1h", help="lifetime: 90s, 30m, 1h, 7d (default 1h)")
    token.add_argument(
        "--max-subscriptions", type=_positive_int, default=None, help="streams at once, at most"
    )
    token.add_argument("--key", type=Path, default=None, help="PEM private key to sign with")
    token.add_argument("--kid", default=None, help="key id in the token's header (with --key)")
    token.add_argument("--aud", default=None, help="audience (default $TICKCAST_JWT_AUDIENCE)")
    token.add_argument("--iss", default=None, help="issuer (default $TICKCAST_JWT_ISSUER)")
    token.set_defaults(command_parser=token, handler=cmd_token)

    bench = commands.add_parser(
        "bench",
        help="load benchmark against a local simulated exchange",
        description="Start the simulated exchange, the server and load-generating clients "
        "(all on 127.0.0.1), measure deliveries, latency, CPU and memory, print a table "
        "and optionally write them as JSON (--json).",
    )
    bench.add_argument("--clients", type=int, default=1000, help="connections (default 1000)")
    bench.add_argument("--symbols", type=int, default=10, help="symbols each (default 10)")
    bench.add_argument(
        "--rate", type=float, default=1.0, help="ticks/s per symbol, or trades/s (default 1)"
    )
    bench.add_argument("--duration", type=float, default=10.0, help="measured seconds (10)")
    bench.add_argument("--warmup", type=float, default=3.0, help="seconds before (default 3)")
    bench.add_argument(
        "--grace",
        type=float,
        default=1.5,
        help="seconds after the window before the clients count (default 1.5)",
    )
    bench.add_argument("--stall", type=int, default=0, help="clients that never read (0)")
    bench.add_argument("--transport", choices=("ws", "sse"), default="ws", help="default ws")
    bench.add_argument(
        "--deflate",
        action="store_true",
        help="the WebSocket clients offer permessage-deflate, as browsers do (default: not)",
    )
    bench.add_argument(
        "--tokens",
        action="store_true",
        help="the server requires per-client tokens (JWT, HS256) and the clients send one: "
        "compare 'connect s per 1,000' with a run without (default: no tokens)",
    )
    bench.add_argument(
        "--streams",
        choices=("ticker", "tickers", "trades", "book", "depth"),
        default="ticker",
        help="what the clients subscribe: the ticker (default), every symbol as the one "
        "stream !tickers, or SYMBOL@trades: --rate is "
        "then trades/s per symbol and --stall clients stop reading at the burst; or "
        "SYMBOL@book / SYMBOL@depth (--rate 10: the books' clock), each client's book "
        "checked against the server's at the end",
    )
    bench.add_argument(
        "--stream-kinds",
        default=None,
        help="TICKCAST_STREAM_KINDS of the server, e.g. '' for the tickers alone (default: "
        "the server's); with --symbols above 10 they are carried for the first ten",
    )
    bench.add_argument(
        "--every-market",
        action="store_true",
        help="the server serves --symbols * (every symbol the simulator lists) instead of "
        "naming them",
    )
    bench.add_argument(
        "--burst", type=int, default=0, help="with trades: N more trades of the first symbol (0)"
    )
    bench.add_argument(
        "--burst-at",
        type=float,
        default=None,
        help="seconds into the window the burst starts (default 0.3 of --duration)",
    )
    bench.add_argument(
        "--burst-seconds", type=float, default=1.0, help="the burst's length (default 1)"
    )
    bench.add_argument(
        "--stall-seconds",
        type=float,
        default=4.0,
        help="with trades: how long the --stall clients read nothing from the burst (4)",
    )
    bench.add_argument(
        "--compare",
        action="append",
        choices=("naive", "raw"),
        default=[],
        help="also run a baseline server on the same load (repeatable)",
    )
    bench.add_argument(
        "--redis",
        action="store_true",
        help="also run tickcast on the Redis hub (a private Redis), side by side with the "
        "memory hub",
    )
    bench.add_argument(
        "--nodes",
        type=int,
        default=1,
        help="with --redis: split the clients over N server processes sharing one upstream (1)",
    )
    bench.add_argument(
        "--workers",
        type=int,
        default=1,
        help="also run tickcast serve --workers N on a private Redis, side by side with one "
        "memory-hub process (1 = not)",
    )
    bench.add_argument("--json", type=Path, default=None, help="write the results here")
    bench.add_argument(
        "--flush-ms", type=float, default=None, help="TICKCAST_FLUSH_MS (default: the server's)"
    )
    bench.add_argument(
        "--slow-timeout", type=float, default=10.0, help="TICKCAST_SLOW_CLIENT_TIMEOUT (10)"
    )
    bench.add_argument("--loadgen-procs", type=int, default=1, help="client processes (1)")
    bench.add_argument("--connect-batch", type=int, default=500, help="connects at once (500)")
    bench.add_argument(
        "--connect-timeout", type=float, default=10.0, help="seconds per connection attempt (10)"
    )
    bench.add_argument("--logs", type=Path, default=None, help="keep process logs here")
    bench.set_defaults(command_parser=bench, handler=cmd_bench)
    return parser


@dataclass(frozen=True)
class FlagGroup:
    """A heading of ``tickcast serve --help`` and the settings whose flags it lists."""

    title: str
    description: str
    settings: tuple[str, ...]


# The one place that says which heading each setting's flag is listed under. A setting
# missing here still gets its flag (under "other"), and tests/test_cli_help.py fails.
SETTING_GROUPS: tuple[FlagGroup, ...] = (
    FlagGroup(
        "upstream",
        "Where the market data comes from and how its connections are kept.",
        (
            "source",
            "symbols",
            "quote_assets",
            "listing_refresh_s",
            "book",
            "binance_url",
            "binance_rest_url",
            "auto_grace",
            "stale_after",
            "rotate_after",
            "backoff_initial",
            "backoff_max",
            "backoff_reset_after",
            "streams_per_connection",
            "sim_rate",
            "sim_seed",
            "sim_symbols",
            "replay_speed",
        ),
    ),
    FlagGroup(
        "streams",
        "The trades, candles and order books carried beside the ticker, their candle "
        "history and how books are served.",
        (
            "stream_kinds",
            "stream_symbols",
            "kline_intervals",
            "kline_history",
            "book_levels",
            "book_interval_ms",
            "book_checkpoint_s",
            "book_snapshot_limit",
        ),
    ),
    FlagGroup(
        "serving",
        "Where clients connect, and the history kept for them.",
        ("host", "port", "history_size"),
    ),
    FlagGroup(
        "clients",
        "How each connected client is written to, pinged and closed.",
        (
            "slow_client_timeout",
            "client_buffer_bytes",
            "client_sndbuf",
            "ping_interval",
            "idle_timeout",
            "flush_ms",
            "ws_deflate",
            "sse_heartbeat",
            "sse_retry_ms",
            "client_trade_queue",
        ),
    ),
    FlagGroup(
        "limits",
        "What one client, connection or request may take.",
        (
            "max_connections",
            "max_connections_per_ip",
            "max_subscriptions",
            "max_message_bytes",
            "ops_per_second",
            "ops_burst",
            "handshake_timeout",
            "max_header_bytes",
            "max_header_line_bytes",
        ),
    ),
    FlagGroup(
        "security",
        "Who may connect, from which pages, and whose forwarded addresses are believed.",
        (
            "token",
            "jwt_secret",
            "jwt_jwks",
            "jwt_audience",
            "jwt_issuer",
            "jwt_leeway",
            "jwt_rest",
            "max_connections_per_subject",
            "allowed_origins",
            "cors_origins",
            "trusted_proxies",
        ),
    ),
    FlagGroup(
        "scale-out",
        "Several processes or hosts sharing one upstream through Redis.",
        ("redis_url", "redis_prefix", "lease_ttl", "role", "workers", "node_id"),
    ),
    FlagGroup("logging", "", ("log_format", "log_level")),
)
_OTHER = "other settings"


def ungrouped_settings(names: Iterable[str]) -> list[str]:
    """The settings among ``names`` that no entry of ``SETTING_GROUPS`` lists."""
    grouped = {name for group in SETTING_GROUPS for name in group.settings}
    return [name for name in names if name not in grouped]


class SettingsHelpFormatter(argparse.HelpFormatter):
    """argparse's help, with a boolean flag listed as ``--book/--no-book``."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if isinstance(action, argparse.BooleanOptionalAction):
            return "/".join(action.option_strings)
        return super()._format_action_invocation(action)


def add_settings_flags(parser: argparse.ArgumentParser, only: Sequence[str] | None = None) -> None:
    """One flag per Settings field, under its heading (``SETTING_GROUPS``), documented with
    its variable, its default and, for a field with a fixed set of values, the choices."""
    fields = Settings.model_fields
    wanted = [name for name in fields if only is None or name in only]
    other = FlagGroup(_OTHER, "", tuple(ungrouped_settings(wanted)))
    for group in (*SETTING_GROUPS, other):
        names = [name for name in group.settings if name in wanted]
        if not names:
            continue
        heading = parser.add_argument_group(group.title, group.description or None)
        for name in names:
            _add_setting_flag(heading, name, fields[name])


def _add_setting_flag(heading: argparse._ArgumentGroup, name: str, info: FieldInfo) -> None:
    flag = "--" + name.replace("_", "-")
    env = f"TICKCAST_{name.upper()}"
    help_text = f"{info.description} [{env}; default {_default_text(name, info)}]"
    help_text = help_text.replace("%", "%%")
    kind = _flag_type(name, info)
    if kind is bool:
        heading.add_argument(
            flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text
        )
        return
    # The choices are shown, not enforced by argparse: pydantic checks every value, so a
    # wrong one is reported like any other setting (naming the variable and the flag).
    choices = _choices(info)
    metavar = "{" + ",".join(choices) + "}" if choices else None
    heading.add_argument(flag, dest=name, default=None, type=kind, metavar=metavar, help=help_text)


# Defaults computed in each process, described rather than shown as computed for --help.
_DEFAULT_WORDS = {"node_id": "HOSTNAME-PID"}


def _default_text(name: str, info: FieldInfo) -> str:
    """The default as a user would write it (a list comma separated)."""
    if name in _DEFAULT_WORDS:
        return _DEFAULT_WORDS[name]
    default = info.get_default(call_default_factory=True)
    if isinstance(default, list):
        default = ",".join(map(str, default))
    return repr(default)


def _choices(info: FieldInfo) -> tuple[str, ...]:
    """The values a ``Literal`` field allows; empty for any other field."""
    if typing.get_origin(info.annotation) is not typing.Literal:
        return ()
    return tuple(str(value) for value in typing.get_args(info.annotation))


# Settings whose flag takes a word as well as a number (``--workers auto``).
_WORDS_TOO = frozenset({"workers"})


def _flag_type(name: str, info: FieldInfo) -> type:
    if name in _WORDS_TOO:
        return str
    annotation = info.annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if annotation in (bool, int, float):
        return typing.cast(type, annotation)
    return str


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides = {
        name: getattr(args, name)
        for name in Settings.model_fields
        if getattr(args, name, None) is not None
    }
    return Settings(**overrides)


def _load_settings(args: argparse.Namespace) -> Settings | None:
    dotenv = dotenv_values(".env")
    json_lines = _wants_json_logs(args)
    # A misspelt variable would otherwise be ignored without a word (pydantic ignores
    # names it does not know): one line each, before the settings are read.
    for unknown in unknown_variables(os.environ, dotenv):
        _report(str(unknown), "warning", json_lines, variable=unknown.name)
    try:
        return settings_from_args(args)
    except ValidationError as exc:
        flags = [name for name in Settings.model_fields if getattr(args, name, None) is not None]
        from_dotenv = dotenv_origins(dotenv, os.environ, flags)
        for error in setting_errors(exc, from_dotenv):
            _report(str(error), "error", json_lines, setting=error.env, flag=error.flag)
        return None


def _report(message: str, level: str, json_line: bool, **fields: str) -> None:
    """One line on stderr, before logging is set up: ``tickcast: ...``, or a JSON line in
    the log's shape when JSON logs are asked for."""
    if json_line:
        line = {
            "ts": round(time.time(), 3),
            "level": level,
            "logger": "tickcast",
            "message": message,
            **fields,
        }
        print(orjson.dumps(line).decode(), file=sys.stderr)
    else:
        print(f"tickcast: {message}", file=sys.stderr)


def _wants_json_logs(args: argparse.Namespace) -> bool:
    """Whether errors found before logging is set up should be JSON lines: the flag, the
    environment or ``.env`` asks for it (read by hand, since the settings are invalid)."""
    value = getattr(args, "log_format", None) or os.environ.get("TICKCAST_LOG_FORMAT")
    if value is None:
        value = dotenv_values(".env").get("TICKCAST_LOG_FORMAT")
    return (value or "").strip().lower() == "json"


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _load_settings(args)
    if settings is None:
        return 2
    if settings.source.startswith("replay:"):
        problem = _capture_problem(Path(settings.source.removeprefix("replay:")))
        if problem is not None:
            print(f"tickcast: {problem}", file=sys.stderr)
            return 2
    if settings.workers > 1:
        from tickcast.serve.workers import run_workers, workers_problem

        problem = workers_problem(settings)
        if problem is not None:
            print(f"tickcast: {problem}", file=sys.stderr)
            return 2
        return run_workers(settings)
    from tickcast.serve.server import run_server

    return run_server(settings)


_RECORD_HINT = "record one with `tickcast record --out FILE`"


def _capture_problem(path: Path) -> str | None:
    """Why ``path`` cannot be replayed, in one line with what to do; None if it can."""
    from tickcast.upstream.replay import load_capture

    try:
        load_capture(path)
    except FileNotFoundError:
        return f"the capture {path} does not exist: check the path, or {_RECORD_HINT}"
    except IsADirectoryError:
        return f"the capture {path} is a directory: give the path of a .jsonl file"
    except PermissionError:
        return f"no permission to read the capture {path}"
    except OSError as exc:
        return f"cannot read the capture {path}: {exc.strerror or exc}"
    except ValueError as exc:
        if "holds no frames" in str(exc):
            return f"the capture {path} holds no frames: {_RECORD_HINT}"
        detail = str(exc).removeprefix(f"{path}:")
        return f"{path} is not a tickcast capture (line {detail}); {_RECORD_HINT}"
    return None


def _open_for_writing(path: Path) -> IO[bytes] | str:
    """The file opened for writing, or one line saying why it cannot be and what to do."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("wb")
    except IsADirectoryError:
        return f"{path} is a directory: give a file path, e.g. {path / 'capture.jsonl'}"
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in path.parents if p.is_file()), path.parent)
        return f"cannot create {path}: {blocker} is a file, not a folder"
    except PermissionError:
        return f"no permission to write {path}: choose a folder you can write to"
    except OSError as exc:
        return f"cannot write {path}: {exc.strerror or exc}"


def cmd_sim_exchange(args: argparse.Namespace) -> int:
    from tickcast.logs import configure_logging
    from tickcast.sim.exchange import SimConfig, parse_fault_schedule, serve_forever
    from tickcast.sim.listings import MAX_SYMBOLS

    configure_logging("text", "info")
    try:
        schedule = parse_fault_schedule(args.fault_schedule) if args.fault_schedule else ()
    except ValueError as exc:
        print(f"tickcast sim-exchange: {exc}", file=sys.stderr)
        return 2
    text = args.symbols.strip()
    counted = text.isascii() and text.isdigit()
    symbols = () if counted else tuple(s.strip().upper() for s in text.split(",") if s.strip())
    try:
        count = int(text) if counted and len(text) <= 9 else 0
        if counted and not 1 <= count <= MAX_SYMBOLS:
            raise ValueError(f"--symbols: a count must be 1..{MAX_SYMBOLS}, got {text[:20]}")
        config = SimConfig(
            host=args.host,
            port=args.port,
            seed=args.seed,
            rate=args.rate,
            trade_rate=args.trade_rate,
            symbols=symbols,
            symbol_count=count,
            ping_interval=args.ping_interval,
            fault_schedule=schedule,
            rest_weight_limit=args.rest_weight_limit,
            rest_weight_window=args.rest_weight_window,
        )
    except ValueError as exc:  # a rate that is not a positive number, a bad count
        print(f"tickcast sim-exchange: {exc}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever(config))
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    from tickcast.logs import configure_logging

    settings = _load_settings(args)
    if settings is None:
        return 2
    if settings.source.startswith("replay:"):
        print("tickcast record: recording a replay makes no sense", file=sys.stderr)
        return 2
    opened = _open_for_writing(args.out)
    if isinstance(opened, str):
        print(f"tickcast record: {opened}", file=sys.stderr)
        return 2
    configure_logging("text", "info")
    with opened as out, contextlib.suppress(KeyboardInterrupt):
        frames = asyncio.run(record(settings, out, args.seconds))
        print(f"recorded {frames} frames to {args.out}", file=sys.stderr)
    return 0


async def record(settings: Settings, out: IO[bytes], seconds: float | None) -> int:
    """Write every upstream frame as ``{"t": ms, "source": label, "frame": text}``; returns
    the frames written. ``source`` is where the frame came from (``binance`` or ``sim``,
    per frame under ``auto``): a replay keeps simulated data marked simulated. A write that
    fails (a full disk) is counted by the client and skipped; the capture goes on."""
    from tickcast.tasks import cancel_and_wait
    from tickcast.upstream.sources import build_source

    count = 0

    def write(label: SourceLabel, frame: str) -> None:
        nonlocal count
        line = {"t": time.time_ns() // 1_000_000, "source": label, "frame": frame}
        out.write(orjson.dumps(line) + b"\n")
        count += 1

    source = build_source(settings, lambda _update, _label: None, on_frame=write)
    task = asyncio.create_task(source.run())
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout=seconds)
    except TimeoutError:
        pass
    finally:
        await cancel_and_wait(task)
        out.flush()
    return count


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def cmd_tail(args: argparse.Namespace) -> int:
    from tickcast.tail import OutputClosed, OutputFormat, asked_names, run_tail

    parser: CommandParser = args.command_parser
    try:
        symbols = asked_names(args.symbols)
    except ValueError as exc:
        parser.error(f"not a stream: {exc}")
    output = OutputFormat(args.format or ("table" if sys.stdout.isatty() else "plain"))
    token: str | typing.Callable[[], str | None] | None
    token = args.token or os.environ.get("TICKCAST_TOKEN") or None
    if args.token_file is not None:
        token = _file_token(args.token_file)
    tail = run_tail(
        args.url,
        symbols,
        args.sse,
        token=token,
        output=output,
        max_seconds=args.seconds,
        levels=args.levels,
    )
    try:
        return asyncio.run(tail)
    except KeyboardInterrupt:
        return 0
    except OutputClosed:
        # The reader left (`tickcast tail | head -3`): a normal end. Point stdout at
        # devnull, as Python's docs advise for SIGPIPE, so the flush at exit cannot fail.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def cmd_token(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from tickcast.edge.tokens import mint, parse_duration

    parser: CommandParser = args.command_parser
    try:
        ttl = parse_duration(args.ttl)
    except ValueError as exc:
        parser.error(f"--ttl: {exc}")
    settings = _load_settings(args)
    if settings is None:
        return 2
    key: object = settings.jwt_secret
    if args.key is not None:
        try:
            key = load_pem_private_key(args.key.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            _report(f"cannot use {args.key} as a private key: {exc}", "error", False)
            return 1
    elif not key:
        _report("no key: set TICKCAST_JWT_SECRET or pass --key private.pem", "error", False)
        return 1
    streams = None
    if args.streams is not None:
        streams = [s.strip() for s in args.streams.split(",") if s.strip()]
    try:
        token = mint(
            key,
            args.sub,
            ttl,
            streams=streams,
            max_subscriptions=args.max_subscriptions,
            audience=settings.jwt_audience if args.aud is None else args.aud,
            issuer=settings.jwt_issuer if args.iss is None else args.iss,
            kid=args.kid,
        )
    except ValueError as exc:
        _report(str(exc), "error", False)
        return 1
    print(token)
    return 0


def _file_token(path: Path) -> typing.Callable[[], str | None]:
    def read() -> str | None:
        try:
            return path.read_text().strip() or None
        except OSError:
            return None  # the connection is refused (401), and says so

    return read


def cmd_bench(args: argparse.Namespace) -> int:
    from tickcast.bench.config import BenchConfig
    from tickcast.bench.runner import run_bench

    config = BenchConfig(
        clients=args.clients,
        symbols=args.symbols,
        rate=args.rate,
        duration=args.duration,
        stall=args.stall,
        streams=args.streams,
        burst=args.burst,
        burst_at=args.burst_at,
        burst_seconds=args.burst_seconds,
        stall_seconds=args.stall_seconds,
        transport=args.transport,
        deflate=args.deflate,
        every_market=args.every_market,
        stream_kinds=args.stream_kinds,
        tokens=args.tokens,
        compare=tuple(args.compare),
        redis=args.redis,
        nodes=args.nodes,
        workers=args.workers,
        json_path=args.json,
        flush_ms=args.flush_ms,
        slow_timeout=args.slow_timeout,
        loadgen_procs=args.loadgen_procs,
        warmup=args.warmup,
        grace=args.grace,
        connect_batch=args.connect_batch,
        connect_timeout=args.connect_timeout,
        logs=args.logs,
        argv=tuple(sys.argv[1:]),
    )
    return run_bench(config)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
