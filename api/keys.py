"""Scoped API keys: who may read, write or administer which collection.

A key grants scopes per collection (``docs:read``, ``*:admin``); admin implies write implies
read, and the collection ``*`` means every collection. Keys come from three places, all consulted
by one KeyRing: the keys file (written by `rag keys create/revoke`), the environment
(``RAG_SERVER__API_KEYS``, JSON) and the legacy ``server.admin_api_key`` (``*:admin``).

Only SHA-256 hashes of keys are kept, on disk and in memory, so a leaked keys file or a memory
dump gives no usable key. Created tokens hold 256 random bits, so a fast hash is enough: there is
nothing to brute-force (keys set in the environment are the operator's choice: make them long and
random too). A presented token is hashed and compared in constant time with every
known hash, so response timing tells nothing about how close a guess was or which key matched.

A running server re-reads the keys file when it changes, so a revoke takes effect on the next
request without a restart; a file that became unreadable keeps the last good keys (fail closed).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, get_args

from rag.errors import ConfigError
from rag.fsutil import FileLock, atomic_write_text

if TYPE_CHECKING:
    from pydantic import SecretStr

    from rag.config import Settings

log = logging.getLogger("rag.api.keys")

Scope = Literal["read", "write", "admin"]
# Each scope implies the ones before it: admin > write > read.
SCOPES: Final[tuple[Scope, ...]] = get_args(Scope)
ALL: Final = "*"
COLLECTION_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")  # as rag.collections names them
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
AuthReason = Literal["missing", "unknown", "expired", "revoked"]
Status = Literal["active", "expired", "revoked"]

KEYS_FILE_NAME = "keys.json"
KEYS_FILE_MODE = 0o600  # hashes only, but still nobody else's business
KEYS_FILE_VERSION = 1
KEY_ID_PREFIX = "k_"
KEY_ID_BYTES = 4  # 8 hex characters: ids are for people to read, the secret part is separate
TOKEN_PREFIX = "rag_"  # recognisable in a leaked-secret scan
TOKEN_SECRET_BYTES = 32
MAX_NAME_CHARS = 64
ENV_VAR = "RAG_SERVER__API_KEYS"
ENV_KEY_PREFIX = "env:"
ADMIN_KEY_ID = "admin"
ADMIN_KEY_NAME = "server.admin_api_key"
ENV_ENTRY_FIELDS = frozenset({"key", "scopes", "name", "expires_at"})
GRANT_HELP = (
    "write a grant as COLLECTION:SCOPE, e.g. docs:read; SCOPE is one of read, write, admin (admin "
    "implies write, write implies read); COLLECTION is a name of lowercase letters, digits, _ and - "
    "(at most 64, starting with a letter or digit) or * for every collection"
)


class AuthError(Exception):
    """A request's key was refused. ``reason`` says why (the HTTP layer maps it to 401); the
    message says what to do and never contains the presented token."""

    def __init__(self, reason: AuthReason, message: str, key_id: str | None = None) -> None:
        super().__init__(message)
        self.reason: AuthReason = reason
        self.key_id = key_id


@dataclass(frozen=True)
class Principal:
    """Who a request authenticated as, and what it may do."""

    key_id: str
    name: str
    grants: frozenset[tuple[str, Scope]]

    def allows(self, collection: str, scope: Scope) -> bool:
        """Whether some grant covers ``scope`` (or a higher one) on ``collection`` (or on ``*``)."""
        wanted = SCOPES.index(scope)
        return any(c in (collection, ALL) and SCOPES.index(s) >= wanted for c, s in self.grants)

    def collections(self, scope: Scope) -> frozenset[str] | Literal["*"]:
        """The collections this key has ``scope`` on: ALL when a ``*`` grant covers it."""
        wanted = SCOPES.index(scope)
        names = {c for c, s in self.grants if SCOPES.index(s) >= wanted}
        return ALL if ALL in names else frozenset(names)

    def readable(self) -> frozenset[str] | Literal["*"]:
        """The collections this key may read (ALL for every one), e.g. to filter a listing."""
        return self.collections("read")


def parse_grant(text: str) -> tuple[str, Scope]:
    """``"docs:read"`` -> ``("docs", "read")``; anything else is a ValueError that teaches the syntax."""
    collection, sep, scope = text.strip().partition(":")
    if not sep or scope not in SCOPES or not (collection == ALL or COLLECTION_PATTERN.fullmatch(collection)):
        raise ValueError(f"bad grant {text!r}: {GRANT_HELP}")
    return collection, scope  # type: ignore[return-value]  # checked against SCOPES above


def normalise_grants(grants: list[str]) -> list[str]:
    """Grants validated and written canonically, duplicates dropped, order kept."""
    if not grants:
        raise ValueError(f"a key needs at least one grant; {GRANT_HELP}")
    canonical = [":".join(parse_grant(g)) for g in grants]
    return list(dict.fromkeys(canonical))


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC to the second, ``2025-01-31T12:00:00Z``: one spelling in the file and tables."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment} has no timezone; pass an aware datetime (e.g. datetime.now(UTC))")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """An ISO 8601 time with a timezone (``Z`` or ``+00:00``); a naive one is refused, not guessed."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} has no timezone; add Z for UTC, e.g. 2030-01-31T00:00:00Z")
    return moment.astimezone(UTC)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass
class KeyRecord:
    """One key of the keys file. ``sha256`` is the hex SHA-256 of the whole token: the token
    itself is shown once, at creation, and stored nowhere."""

    id: str
    name: str
    sha256: str
    grants: list[str]
    created_at: str
    expires_at: str | None = None
    revoked_at: str | None = None

    def status(self, now: datetime | None = None) -> Status:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and parse_time(self.expires_at) <= (now or utc_now()):
            return "expired"
        return "active"

    def principal(self) -> Principal:
        return Principal(self.id, self.name, frozenset(parse_grant(g) for g in self.grants))

    def public(self) -> dict[str, Any]:
        """The record without its hash, for listings (`rag keys list --json`, an admin route)."""
        data = asdict(self)
        del data["sha256"]
        return {**data, "status": self.status()}

    @classmethod
    def from_dict(cls, data: Any) -> KeyRecord:
        """A record read from the file; a malformed one is a ValueError saying which field."""
        fields = list(cls.__dataclass_fields__)
        if not isinstance(data, dict) or set(data) != set(fields):
            raise ValueError(f"expected exactly the fields {', '.join(fields)}")
        texts = [data[f] for f in ("id", "name", "sha256", "created_at")]
        grants = data["grants"]
        if not all(isinstance(t, str) for t in texts) or not isinstance(grants, list):
            raise ValueError("id, name, sha256 and created_at must be strings, grants a list")
        if not all(isinstance(g, str) for g in grants):
            raise ValueError("every grant must be a string such as docs:read")
        record = cls(**data)
        if not SHA256_HEX.fullmatch(record.sha256):
            raise ValueError(f"key {record.id}: sha256 is not 64 lowercase hex digits")
        normalise_grants(record.grants)
        for moment in (record.created_at, record.expires_at, record.revoked_at):
            if moment is not None:
                parse_time(moment)
        return record


def keys_path(settings: Settings) -> Path:
    """Where the keys file is: server.keys_file, else <index_dir>/keys.json (the same for the
    server and `rag keys`, since both resolve settings the same way)."""
    return settings.server.keys_file or settings.index_dir / KEYS_FILE_NAME


class KeyFile:
    """The keys file (JSON): read, and changed under a lock so two `rag keys create` in two shells
    cannot lose a key (each reads the other's write before adding its own)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock_path = self.path.with_name(self.path.name + ".lock")

    def records(self) -> list[KeyRecord]:
        """Every key in the file, revoked and expired ones included; none when it does not exist."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except UnicodeDecodeError:
            raise ConfigError(f"keys file {self.path} is not UTF-8 text; restore it from a backup") from None
        except OSError as exc:
            raise ConfigError(
                f"keys file {self.path} cannot be read ({exc.strerror}); fix its permissions"
            ) from None
        return self._parse(text)

    def _parse(self, text: str) -> list[KeyRecord]:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ConfigError(
                f"keys file {self.path} is not valid JSON ({exc}); restore it from a backup"
            ) from None
        if not isinstance(data, dict) or data.get("version") != KEYS_FILE_VERSION:
            raise ConfigError(
                f"keys file {self.path} is not a version {KEYS_FILE_VERSION} keys file; "
                "restore it from a backup, or move it away and create the keys again"
            )
        records = []
        for position, entry in enumerate(data.get("keys", []), start=1):
            try:
                records.append(KeyRecord.from_dict(entry))
            except (TypeError, ValueError) as exc:
                raise ConfigError(
                    f"keys file {self.path}, entry {position}: {exc}; fix or remove it"
                ) from None
        return records

    def create(
        self, name: str, grants: list[str], expires_at: datetime | None = None
    ) -> tuple[KeyRecord, str]:
        """Add a key; returns its record and the token, which exists nowhere else afterwards.

        ``name`` labels the key in listings and logs (empty: its id); ``expires_at`` must be an
        aware datetime in the future, or None for a key that lasts until revoked.
        """
        canonical = normalise_grants(grants)
        expiry = self._check_expiry(expires_at)
        label = _check_name(name)
        with self._locked() as records:
            key_id = _new_id({r.id for r in records})
            token = _new_token(key_id)
            record = KeyRecord(
                id=key_id,
                name=label or key_id,
                sha256=hash_token(token),
                grants=canonical,
                created_at=format_time(utc_now()),
                expires_at=expiry,
            )
            self._write([*records, record])
        return record, token

    def revoke(self, key_id: str) -> KeyRecord:
        """Mark a key revoked (kept in the file, so the listing shows it and reads stay locked).
        Revoking a revoked key changes nothing; an unknown id is a ValueError naming the file."""
        with self._locked() as records:
            found = next((r for r in records if r.id == key_id), None)
            if found is None:
                raise ValueError(f"no key {key_id!r} in {self.path}; `rag keys list` shows the key ids")
            if found.revoked_at is not None:
                return found
            revoked = replace(found, revoked_at=format_time(utc_now()))
            self._write([revoked if r.id == key_id else r for r in records])
        return revoked

    @staticmethod
    def _check_expiry(expires_at: datetime | None) -> str | None:
        if expires_at is None:
            return None
        text = format_time(expires_at)
        if expires_at <= utc_now():
            raise ValueError(f"expiry {text} is in the past; give a time in the future")
        return text

    @contextmanager
    def _locked(self) -> Iterator[list[KeyRecord]]:
        """The file's lock held (a sibling file, so the atomic rename of the keys file cannot
        swap the locked inode away) and its records read fresh under it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(self._lock_path):
            yield self.records()

    def _write(self, records: list[KeyRecord]) -> None:
        data = {"version": KEYS_FILE_VERSION, "keys": [asdict(r) for r in records]}
        atomic_write_text(self.path, json.dumps(data, indent=2) + "\n", mode=KEYS_FILE_MODE)


def _new_id(taken: set[str]) -> str:
    while True:
        key_id = KEY_ID_PREFIX + secrets.token_hex(KEY_ID_BYTES)
        if key_id not in taken:
            return key_id


def _new_token(key_id: str) -> str:
    """``rag_<id hex>_<256 random bits>``: the id makes a token traceable to its record by eye."""
    return f"{TOKEN_PREFIX}{key_id.removeprefix(KEY_ID_PREFIX)}_{secrets.token_urlsafe(TOKEN_SECRET_BYTES)}"


def _check_name(name: str) -> str:
    label = name.strip()
    if len(label) > MAX_NAME_CHARS or not label.isprintable():
        raise ValueError(
            f"a key name is at most {MAX_NAME_CHARS} printable characters, no newlines or control "
            f"characters (this one has {len(label)}); choose a label such as ci-bot"
        )
    return label


@dataclass(frozen=True)
class _Entry:
    """A key as the ring holds it: its hash as bytes, what it grants, when it stops working."""

    digest: bytes
    principal: Principal
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of_record(cls, record: KeyRecord) -> _Entry:
        return cls(
            bytes.fromhex(record.sha256),
            record.principal(),
            parse_time(record.expires_at) if record.expires_at else None,
            parse_time(record.revoked_at) if record.revoked_at else None,
        )


FileSignature = tuple[int, int, int]  # (mtime_ns, size, inode): changes with every atomic write
UNREADABLE: FileSignature = (-1, -1, -1)  # stat failed other than "missing" (a folder's permissions)


class KeyRing:
    """Every configured key, consulted on each request. Cheap to call: one os.stat of the keys
    file, and a re-read only when it changed."""

    def __init__(self, keyfile: KeyFile | None, static: list[_Entry]) -> None:
        self._keyfile = keyfile
        self._static = static
        self._file_entries: list[_Entry] = []
        self._signature: FileSignature | None = None
        self._lock = threading.Lock()
        if keyfile is not None:
            # stat before reading: a write in between changes the signature, so it is re-read.
            self._signature = self._stat()
            self._file_entries = [_Entry.of_record(r) for r in keyfile.records()]

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        """The keys file (when it exists), RAG_SERVER__API_KEYS and server.admin_api_key. A broken
        keys file or environment value is a ConfigError here, so a server does not start with it."""
        static = _env_entries(settings.server.api_keys)
        admin = settings.server.admin_api_key
        if admin is not None and admin.get_secret_value():
            grants = frozenset({(ALL, "admin")})
            digest = hashlib.sha256(admin.get_secret_value().encode("utf-8")).digest()
            static.append(_Entry(digest, Principal(ADMIN_KEY_ID, ADMIN_KEY_NAME, grants), None, None))
        return cls(KeyFile(keys_path(settings)), static)

    @property
    def configured(self) -> bool:
        """Whether any key exists anywhere, revoked and expired ones included: once an operator
        has created keys, reads need one, and revoking the last key does not reopen the server."""
        return bool(self._static or self._current())

    def authenticate(self, token: str | None) -> Principal:
        """The principal of ``token``, or AuthError with reason missing, unknown, revoked, expired."""
        if not token:
            raise AuthError(
                "missing",
                "this server needs an API key; send `Authorization: Bearer <key>` (an operator "
                "creates keys with `rag keys create`)",
            )
        digest = hashlib.sha256(token.encode("utf-8")).digest()
        match: _Entry | None = None
        for entry in (*self._static, *self._current()):
            # Every hash is compared, whatever matched before: no early exit to time.
            if hmac.compare_digest(digest, entry.digest) and match is None:
                match = entry
        if match is None:
            raise AuthError(
                "unknown",
                "the API key is not one this server knows; check it for a typo, or ask an operator "
                "for a key (`rag keys create`)",
            )
        return _check_valid(match)

    def _current(self) -> list[_Entry]:
        """The keys file's entries, re-read when the file changed since the last look."""
        if self._keyfile is None:
            return []
        with self._lock:
            signature = self._stat()
            if signature != self._signature:
                self._reload(signature)
            return self._file_entries

    def _reload(self, signature: FileSignature | None) -> None:
        assert self._keyfile is not None
        try:
            if signature is None and self._file_entries:
                # Deleting the file must not reopen a locked server; a restart does, deliberately.
                raise ConfigError(f"keys file {self._keyfile.path} disappeared")
            records = self._keyfile.records() if signature is not None else []
            self._file_entries = [_Entry.of_record(r) for r in records]
        except (ConfigError, ValueError) as exc:
            log.error(
                "%s; still using the %d keys read from it before, until it is fixed",
                exc,
                len(self._file_entries),
            )
        # Remembered even after a failure, so a broken file is logged once, not on every request.
        self._signature = signature

    def _stat(self) -> FileSignature | None:
        assert self._keyfile is not None
        try:
            st = os.stat(self._keyfile.path)
        except FileNotFoundError:
            return None
        except OSError:
            return UNREADABLE  # then the read fails too, which keeps the last good keys
        return st.st_mtime_ns, st.st_size, st.st_ino


def _check_valid(entry: _Entry) -> Principal:
    key_id = entry.principal.key_id
    if entry.revoked_at is not None:
        raise AuthError(
            "revoked",
            f"API key {key_id} was revoked at {format_time(entry.revoked_at)}; ask an operator for a new key",
            key_id,
        )
    if entry.expires_at is not None and entry.expires_at <= utc_now():
        raise AuthError(
            "expired",
            f"API key {key_id} expired at {format_time(entry.expires_at)}; ask an operator for a new key",
            key_id,
        )
    return entry.principal


def _env_entries(value: SecretStr | None) -> list[_Entry]:
    """RAG_SERVER__API_KEYS parsed and hashed; the plaintext keys are dropped here."""
    if value is None or not value.get_secret_value().strip():
        return []
    try:
        data = json.loads(value.get_secret_value())
    except ValueError as exc:
        # json's message gives a position, never the text around it.
        raise ConfigError(f"{ENV_VAR} is not valid JSON ({exc}); {_ENV_SHAPE}") from None
    if not isinstance(data, list):
        raise ConfigError(f"{ENV_VAR} must be a JSON list of keys; {_ENV_SHAPE}")
    entries = [_env_entry(item, position) for position, item in enumerate(data, start=1)]
    ids = [e.principal.key_id for e in entries]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ConfigError(
            f"{ENV_VAR}: the names {', '.join(duplicates)} are used twice; give each key its own"
        )
    return entries


_ENV_SHAPE = (
    'expected [{"key": "<secret>", "scopes": ["docs:read", "*:admin"], "name": "ci", '
    '"expires_at": "2030-01-31T00:00:00Z" or null}]'
)


def _env_entry(item: Any, position: int) -> _Entry:
    where = f"{ENV_VAR} entry {position}"
    if not isinstance(item, dict):
        raise ConfigError(f"{where} is not an object; {_ENV_SHAPE}")
    unknown = sorted(set(item) - ENV_ENTRY_FIELDS)
    if unknown:
        raise ConfigError(f"{where} has unknown fields {', '.join(unknown)}; {_ENV_SHAPE}")
    key, scopes, name = item.get("key"), item.get("scopes"), item.get("name", str(position))
    if not isinstance(key, str) or not key:
        raise ConfigError(f"{where} needs a non-empty string key; {_ENV_SHAPE}")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: name must be a non-empty string such as ci")
    where = f"{ENV_VAR} entry {position} ({name})"
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise ConfigError(f"{where}: scopes must be a list of grants; {GRANT_HELP}")
    expires = item.get("expires_at")
    if expires is not None and not isinstance(expires, str):
        raise ConfigError(
            f"{where}: expires_at must be an ISO 8601 time such as 2030-01-31T00:00:00Z, or null"
        )
    try:
        _check_name(name)
        grants = frozenset(parse_grant(g) for g in normalise_grants(scopes))
        expires_at = parse_time(expires) if expires is not None else None
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return _Entry(digest, Principal(ENV_KEY_PREFIX + name, name, grants), expires_at, None)
