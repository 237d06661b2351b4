"""Configuration: ``TICKCAST_*`` environment variables and ``.env``; CLI flags override them."""

from __future__ import annotations

import difflib
import ipaddress
import os
import socket
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Final, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tickcast.messages.stream import KLINE_INTERVALS
from tickcast.messages.tick import DEFAULT_SYMBOLS

__all__ = [
    "DEFAULT_SYMBOLS",
    "EVERY_MARKET",
    "TOOL_VARIABLES",
    "SettingError",
    "Settings",
    "UnknownVariable",
    "dotenv_origins",
    "setting_errors",
    "unknown_variables",
]


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _proxy_network(entry: str) -> str:
    """One entry of ``trusted_proxies`` in canonical form (an address or a network);
    ValueError naming it when it is neither."""
    try:
        network = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        raise ValueError(
            f"{entry!r} is not an IP address or network (such as 10.0.0.5 or 10.0.0.0/8)"
        ) from None
    address, slash, _ = entry.partition("/")
    if not slash:
        return str(network.network_address)
    if ipaddress.ip_address(address) != network.network_address:
        raise ValueError(f"{entry!r} has host bits set: did you mean {network}?")
    return str(network)


# ``TICKCAST_SYMBOLS=*``: every symbol the exchange lists as trading (SPEC §12).
EVERY_MARKET: Final = "*"

# The kinds ``TICKCAST_STREAM_KINDS`` may name, all carried by default (``book``: the
# ``@book`` and ``@depth`` streams of an order book).
STREAM_KINDS: Final = ("trades", "klines", "book")


def default_node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Settings(BaseSettings):
    """Every setting of the server. Each field maps to ``TICKCAST_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix="TICKCAST_", env_file=".env", extra="ignore", validate_default=True
    )

    # Serving
    host: str = Field("0.0.0.0", description="Interface to listen on.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port to listen on.")
    log_format: Literal["text", "json"] = Field("text", description="Log line format.")
    log_level: str = Field("info", description="Log level.")

    # Upstream
    source: str = Field(
        "auto", description="Data source: auto | binance | sim | replay:PATH (a JSONL capture)."
    )
    symbols: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_SYMBOLS),
        description="Symbols to serve, comma separated; * = all trading.",
    )
    quote_assets: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="With symbols *: only symbols quoted in these assets (USDT,FDUSD); "
        "empty = all.",
    )
    listing_refresh_s: float = Field(
        3600.0,
        ge=1,
        le=86400,
        description="With symbols *: how often the exchange's listing is read again (s).",
    )
    book: bool = Field(False, description="Also subscribe <sym>@bookTicker (best bid/ask).")
    binance_url: str = Field(
        "wss://data-stream.binance.vision", description="Binance market-data WebSocket base URL."
    )
    binance_rest_url: str = Field(
        "https://data-api.binance.vision",
        description="Binance market-data REST base URL (candle history at start).",
    )
    stream_kinds: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(STREAM_KINDS),
        description="Streams carried beside the ticker, comma separated: trades, klines, book.",
    )
    stream_symbols: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Symbols whose trades, candles and books are carried; empty = every "
        "served one.",
    )
    kline_intervals: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["1m"], description="Candle intervals carried, comma separated."
    )
    auto_grace: float = Field(
        8.0, gt=0, description="auto: seconds without live data before serving simulated data."
    )
    stale_after: float = Field(
        10.0, gt=0, description="Replace an upstream connection silent for this many seconds."
    )
    rotate_after: float = Field(
        23 * 3600.0, gt=0, description="Rotate an upstream connection (make-before-break) at age."
    )
    backoff_initial: float = Field(0.5, gt=0, description="First reconnect delay cap (s).")
    backoff_max: float = Field(30.0, gt=0, description="Largest reconnect delay (s).")
    backoff_reset_after: float = Field(
        60.0, gt=0, description="Healthy seconds after which the backoff starts over."
    )
    streams_per_connection: int = Field(
        1024, ge=1, le=1024, description="Upstream streams per connection (Binance: 1024)."
    )
    sim_rate: float = Field(1.0, gt=0, description="Simulated events per second per symbol.")
    sim_seed: int | None = Field(
        None,
        description="Seed of the in-process simulated exchange's random walk; unset: taken "
        "from the clock, so no two starts replay the same prices.",
    )
    sim_symbols: int | None = Field(
        None,
        ge=1,
        le=20_000,  # the simulator's limit, sim.listings.MAX_SYMBOLS
        description="Symbols the in-process simulated exchange lists: the served ones, then "
        "generated ones across quote assets up to this count; unset: the served ones.",
    )
    replay_speed: float = Field(1.0, gt=0, description="replay: playback speed factor.")

    # State
    history_size: int = Field(
        1000, ge=1, description="Messages of history held per stream (ticks, trades, candles)."
    )
    kline_history: int = Field(
        1000, ge=1, le=100_000, description="Candles held per symbol and interval for /klines."
    )
    book_levels: int = Field(
        20, ge=1, le=5000, description="Levels per side of a SYMBOL@book message."
    )
    book_interval_ms: int = Field(
        100, ge=0, le=60_000, description="SYMBOL@book is sent at most this often (ms)."
    )
    book_checkpoint_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="With Redis, each whole book is published again this often when it "
        "moved (a node that joins late starts from it).",
    )
    book_snapshot_limit: int = Field(
        0,
        ge=0,
        le=5000,
        description="Levels per side of the REST snapshot a book starts from (Binance weight "
        "5 up to 100, 25 to 500, 50 to 1000, 250 to 5000); 0 = the deepest that lets every "
        "book start within a minute's weight budget (5000 for up to 19 books).",
    )
    node_id: str = Field(default_factory=default_node_id, description="This node's name.")

    # Scale-out (SPEC §7)
    redis_url: str = Field(
        "", description="Redis (or Valkey) URL: share one upstream across nodes; empty = memory."
    )
    redis_prefix: str = Field(
        "tickcast", min_length=1, description="Prefix (and hash tag) of every Redis key."
    )
    lease_ttl: float = Field(
        3.0, ge=0.5, le=60, description="Leader lease TTL (s); renewed every third of it."
    )
    role: Literal["all", "edge", "ingest"] = Field(
        "all", description="all | edge (never ingests) | ingest (ingests, serves REST only)."
    )
    workers: int = Field(
        1,
        ge=1,
        le=256,
        description="Server processes on this host and port, each a node (needs Redis); "
        "auto = one per core.",
    )

    # Clients
    slow_client_timeout: float = Field(
        10.0, gt=0, description="Close a client that accepts nothing for this long (s)."
    )
    client_buffer_bytes: int = Field(
        1 << 20, ge=1024, description="Close a client whose pending output passes this."
    )
    client_sndbuf: int = Field(
        65536, ge=0, description="Kernel send buffer per client socket (bytes); 0 = OS default."
    )
    ping_interval: float = Field(20.0, gt=0, description="Server ping interval to clients (s).")
    idle_timeout: float = Field(60.0, gt=0, description="Close a client silent this long (s).")
    flush_ms: float = Field(
        0.0, ge=0, description="Write coalescing window per client (ms); 0 = per loop turn."
    )
    ws_deflate: bool = Field(
        True,
        description="Compress /ws messages (permessage-deflate) for clients that offer it; "
        "each message is compressed once for all of them.",
    )
    sse_heartbeat: float = Field(15.0, gt=0, description="SSE comment heartbeat interval (s).")
    sse_retry_ms: int = Field(2000, ge=0, description="SSE retry hint sent to clients (ms).")

    # Security and limits
    max_message_bytes: int = Field(4096, ge=64, description="Largest inbound WS message.")
    ops_per_second: float = Field(20.0, gt=0, description="Client ops per second.")
    ops_burst: int = Field(40, ge=1, description="Client ops burst.")
    max_subscriptions: int = Field(200, ge=1, description="Streams one client may subscribe.")
    client_trade_queue: int = Field(
        1000,
        ge=1,
        description="Trades held for a client that cannot take them; past it the oldest "
        "are dropped and the client gets a gap message.",
    )
    max_connections: int = Field(50000, ge=1, description="Client connections per node.")
    max_connections_per_ip: int = Field(0, ge=0, description="Per client IP; 0 = no limit.")
    handshake_timeout: float = Field(
        10.0, gt=0, description="Close a connection whose request headers take longer (s)."
    )
    max_header_bytes: int = Field(
        32768, ge=1024, description="Largest request head (request line and headers); 431."
    )
    max_header_line_bytes: int = Field(
        8192, ge=256, description="Largest request line or single header; 431."
    )
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins allowed on /ws and /sse; empty = any."
    )
    token: str = Field("", description="Bearer token for /ws, /sse, /status; empty = open.")
    jwt_secret: str = Field(
        "",
        description="HS256 secret of per-client tokens (JWT) on /ws and /sse, at least 32 "
        "bytes; empty = no JWT (or see jwt_jwks).",
    )
    jwt_jwks: str = Field(
        "",
        description="JWKS file or URL of the public keys of per-client tokens (RS256, ES256, "
        "EdDSA); empty = none.",
    )
    jwt_audience: str = Field("", description="Required aud claim of tokens; empty = unchecked.")
    jwt_issuer: str = Field("", description="Required iss claim of tokens; empty = unchecked.")
    jwt_leeway: float = Field(
        30.0, ge=0, le=600, description="Clock skew allowed on exp and nbf of tokens (s)."
    )
    jwt_rest: bool = Field(
        False,
        description="Also require a token (a client token, or the shared one) on REST "
        "reads of market data.",
    )
    max_connections_per_subject: int = Field(
        0, ge=0, description="Connections per token subject (sub); 0 = no limit."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["*"], description="REST CORS origins."
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Proxy addresses or networks (CIDR) whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed, comma separated; empty = none.",
    )

    @field_validator("workers", mode="before")
    @classmethod
    def _parse_workers(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return len(os.sched_getaffinity(0))
        return value

    @field_validator("symbols", "stream_symbols", "quote_assets", mode="before")
    @classmethod
    def _parse_symbols(cls, value: object) -> object:
        value = _split_csv(value)
        if isinstance(value, list):
            return [str(v).strip().upper() for v in value]
        return value

    @field_validator("stream_symbols")
    @classmethod
    def _check_stream_symbols(cls, value: list[str]) -> list[str]:
        if EVERY_MARKET in value:
            raise ValueError("* is for TICKCAST_SYMBOLS: name the symbols to carry")
        return cls._check_symbols(value) if value else value

    @field_validator("quote_assets")
    @classmethod
    def _check_quote_assets(cls, value: list[str]) -> list[str]:
        for asset in value:
            if not asset.isalnum() or not asset.isascii():
                raise ValueError(f"invalid quote asset {asset!r}: expected letters and digits")
        return list(dict.fromkeys(value))

    @field_validator("stream_kinds", "kline_intervals", mode="before")
    @classmethod
    def _parse_names(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("stream_kinds")
    @classmethod
    def _check_stream_kinds(cls, value: list[str]) -> list[str]:
        for kind in value:
            if kind not in STREAM_KINDS:
                raise ValueError(
                    f"unknown stream kind {kind!r}: expected {', '.join(STREAM_KINDS)}"
                )
        return list(dict.fromkeys(value))

    @field_validator("kline_intervals")
    @classmethod
    def _check_kline_intervals(cls, value: list[str]) -> list[str]:
        for interval in value:
            if interval not in KLINE_INTERVALS:
                raise ValueError(
                    f"unknown kline interval {interval!r}: expected one of "
                    + ", ".join(KLINE_INTERVALS)
                )
        return list(dict.fromkeys(value))

    @field_validator("binance_rest_url")
    @classmethod
    def _check_rest_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return value

    @property
    def every_market(self) -> bool:
        """``symbols`` is ``*``: every symbol the exchange lists as trading."""
        return EVERY_MARKET in self.symbols

    @property
    def named_symbols(self) -> tuple[str, ...]:
        """The symbols named: without ``*``, the ones served; with it, the ones served
        until the exchange's listing is known (those beside ``*``, else the defaults)."""
        named = tuple(s for s in self.symbols if s != EVERY_MARKET)
        return named or DEFAULT_SYMBOLS

    @property
    def carried_symbols(self) -> tuple[str, ...]:
        """The symbols whose trades, candles and books are carried: ``stream_symbols``
        (with ``*``, while listed; else those served), or the named symbols when none
        are given."""
        if not self.stream_symbols:
            return self.named_symbols
        if self.every_market:
            return tuple(self.stream_symbols)
        served = set(self.symbols)
        return tuple(s for s in self.stream_symbols if s in served)

    @property
    def carried_intervals(self) -> tuple[str, ...]:
        """The candle intervals carried (none when ``klines`` is not a stream kind)."""
        return tuple(self.kline_intervals) if "klines" in self.stream_kinds else ()

    @property
    def carries_trades(self) -> bool:
        return "trades" in self.stream_kinds

    @property
    def carries_books(self) -> bool:
        return "book" in self.stream_kinds

    @field_validator("symbols")
    @classmethod
    def _check_symbols(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one symbol is required")
        for symbol in value:
            if symbol == EVERY_MARKET:
                continue
            if not symbol.isalnum() or not symbol.isascii():
                raise ValueError(f"invalid symbol {symbol!r}: expected letters and digits")
        return list(dict.fromkeys(value))

    @field_validator("allowed_origins", "cors_origins", "trusted_proxies", mode="before")
    @classmethod
    def _parse_csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: list[str]) -> list[str]:
        # Checked here because uvicorn takes an entry it cannot parse for a name that no
        # peer ever matches: a typo would silently leave every forwarded address unread.
        return list(dict.fromkeys(_proxy_network(entry) for entry in value))

    @field_validator("source")
    @classmethod
    def _check_source(cls, value: str) -> str:
        if value in ("auto", "binance", "sim") or (value.startswith("replay:") and len(value) > 7):
            return value
        raise ValueError(f"unknown source {value!r}: expected auto, binance, sim or replay:PATH")

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        value = value.strip()
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("expected redis://host:port/db (or rediss://, unix://)")
        return value

    @field_validator("jwt_secret")
    @classmethod
    def _check_jwt_secret(cls, value: str) -> str:
        # RFC 7518 §3.2: an HS256 key of at least 256 bits; a short one can be guessed.
        if value and len(value.encode()) < 32:
            raise ValueError("at least 32 bytes (for example: openssl rand -hex 32)")
        return value

    @model_validator(mode="after")
    def _check_jwt_keys(self) -> Settings:
        if self.jwt_secret and self.jwt_jwks:
            # One kind of key: a secret beside public keys is how HS/RS confusion starts.
            raise ValueError("set TICKCAST_JWT_SECRET or TICKCAST_JWT_JWKS, not both")
        if self.jwt_rest and not (self.jwt_secret or self.jwt_jwks):
            raise ValueError("TICKCAST_JWT_REST needs TICKCAST_JWT_SECRET or TICKCAST_JWT_JWKS")
        return self

    @model_validator(mode="after")
    def _check_role(self) -> Settings:
        if self.role != "all" and not self.redis_url:
            raise ValueError(
                f"role {self.role!r} needs a shared hub: set TICKCAST_REDIS_URL / --redis-url"
            )
        return self


@dataclass(frozen=True)
class SettingError:
    """One invalid setting, named both ways a user can set it (``env`` and ``flag`` are
    empty for a problem of several settings together)."""

    env: str
    flag: str
    problem: str
    value: str | None

    def __str__(self) -> str:
        if not self.env:
            return f"invalid settings: {self.problem}"
        got = f" (got {self.value})" if self.value is not None else ""
        return f"invalid setting {self.env} / {self.flag}: {self.problem}{got}"


def setting_errors(exc: ValidationError, from_dotenv: Collection[str] = ()) -> list[SettingError]:
    """pydantic's errors in the user's terms: the variable, the flag, what is wrong; a value
    read from ``.env`` (its variable in ``from_dotenv``) says so, since the environment
    does not show it."""
    out = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else ""
        problem = error["msg"].removeprefix("Value error, ")
        problem = problem[:1].lower() + problem[1:]
        raw = error.get("input")
        value = None if raw is None or isinstance(raw, dict) else repr(raw)[:80]
        env = f"TICKCAST_{name.upper()}" if name else ""
        flag = "--" + name.replace("_", "-") if name else ""
        if value is not None and env in from_dotenv:
            value += " from .env"
        out.append(SettingError(env, flag, problem, value))
    return out


# ``TICKCAST_*`` variables that are not settings of the server: the test suite's own
# (browser tests required, soak and fuzz sizes, the README screenshot). Any other
# ``TICKCAST_`` name that is not a setting is a typo, and is warned about.
TOOL_VARIABLES: Final = frozenset(
    {
        "TICKCAST_E2E_REQUIRED",
        "TICKCAST_SOAK_SECONDS",
        "TICKCAST_FUZZ_CASES",
        "TICKCAST_FUZZ_SEED",
        "TICKCAST_UPDATE_SCREENSHOT",
    }
)
_PREFIX: Final = "TICKCAST_"


@dataclass(frozen=True)
class UnknownVariable:
    """A ``TICKCAST_*`` variable that no setting reads: most likely a misspelt one."""

    name: str
    origin: str  # "the environment" or ".env"
    suggestion: str | None

    def __str__(self) -> str:
        hint = f"; did you mean {self.suggestion}?" if self.suggestion else ""
        return f"ignoring {self.name} (from {self.origin}): not a setting{hint}"


def unknown_variables(environ: Iterable[str], dotenv: Iterable[str] = ()) -> list[UnknownVariable]:
    """The ``TICKCAST_*`` names among ``environ`` and ``dotenv`` (the names of ``.env``)
    that are neither a setting nor in ``TOOL_VARIABLES``, each with the closest setting's
    variable when one is close. Names are matched without regard to case, as settings are."""
    known = [_PREFIX + name.upper() for name in Settings.model_fields]
    # Compared without the shared prefix, which would make any two names look alike.
    suffixes = [name.upper() for name in Settings.model_fields]
    out: list[UnknownVariable] = []
    for origin, names in (("the environment", environ), (".env", dotenv)):
        for name in sorted(names):
            upper = name.upper()
            if not upper.startswith(_PREFIX) or upper in known or upper in TOOL_VARIABLES:
                continue
            close = difflib.get_close_matches(upper.removeprefix(_PREFIX), suffixes, 1, 0.7)
            out.append(UnknownVariable(name, origin, _PREFIX + close[0] if close else None))
    return out


def dotenv_origins(
    dotenv: Mapping[str, object], environ: Mapping[str, str], flags: Collection[str]
) -> set[str]:
    """The settings' variables whose value comes from ``.env``: set there, and neither in
    the environment nor given as a flag (both win over ``.env``). ``flags``: the setting
    names given on the command line."""
    in_environ = {name.upper() for name in environ}
    given = {_PREFIX + name.upper() for name in flags}
    return {
        name.upper()
        for name in dotenv
        if name.upper() not in in_environ and name.upper() not in given
    }
