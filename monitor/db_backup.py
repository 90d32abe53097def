"""Online backups of the SQLite database: copy, check, keep a few, send one away.

A backup is taken with SQLite's backup API on a connection of its own while the
service goes on writing (WAL lets a reader hold a consistent snapshot without
blocking writers). Every copy is checked with `PRAGMA integrity_check` before it
gets its final name, so a file named `openclaw-hosted-<UTC>.db` is always a good
one. Whether a backup is due is decided from those names on disk, never from
memory, so a restart neither skips nor repeats a day.

The database holds no gateway passwords (DESIGN.md), so a backup holds no secret
beyond what the database itself does. `BACKUP_S3_URL` is a secret as a whole: no
error raised here ever repeats it or any part of it.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, unquote

from db.migrations import available

PREFIX = "openclaw-hosted-"
_STAMP = "%Y%m%dT%H%M%SZ"
_NAME = re.compile(rf"^{PREFIX}(\d{{8}}T\d{{6}}Z)\.db$")
# Written first under a name that is never mistaken for a finished backup.
_PARTIAL = re.compile(rf"^\.{PREFIX}(\d{{8}}T\d{{6}}Z)\.db\.partial$")
DAILY_KEEP = 7
WEEKLY_KEEP = 4
MAX_AGE = timedelta(hours=24)
# A partial file this much older than now was left by a crash, not by a backup running now.
STALE_PARTIAL = timedelta(hours=1)
BUSY_TIMEOUT_S = 5.0
DEFAULT_REGION = "us-east-1"


class BackupError(Exception):
    """A backup or restore that did not happen; the text is safe to show and log."""


class RestoreError(BackupError):
    """`restore` refused: the text is the one line the operator reads."""


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size: int
    uploaded_key: str | None  # the S3 object key, None when no BACKUP_S3_URL is set
    pruned: tuple[Path, ...]


@dataclass(frozen=True)
class S3Target:
    endpoint_url: str
    bucket: str
    prefix: str  # "" or ending in "/"
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    region: str = DEFAULT_REGION


def backup_name(when: datetime) -> str:
    return f"{PREFIX}{when.astimezone(UTC).strftime(_STAMP)}.db"


def _parse_stamp(stamp: str) -> datetime:
    return datetime.strptime(stamp, _STAMP).replace(tzinfo=UTC)


def list_backups(backup_dir: Path) -> list[tuple[datetime, Path]]:
    """Finished backups, newest first; other files in the folder are ignored."""
    if not backup_dir.is_dir():
        return []
    matches = ((_NAME.match(path.name), path) for path in backup_dir.iterdir() if path.is_file())
    return sorted(((_parse_stamp(m.group(1)), path) for m, path in matches if m), reverse=True)


def backup_due(backup_dir: Path, now: datetime) -> bool:
    """True when no backup of the last 24 hours is on disk. A name stamped after `now`
    (a clock that went back) does not count, or it would hold off backups for good."""
    return not any(now - MAX_AGE < when <= now for when, _ in list_backups(backup_dir))


def prune(backup_dir: Path, now: datetime) -> list[Path]:
    """Keep the newest backup of each of the last 7 UTC days and of each of the last 4
    ISO weeks, the newest of all, and any stamped after `now` (a clock that went back:
    not ours to judge); delete the rest. Returns the deleted files."""
    backups = list_backups(backup_dir)
    today = now.astimezone(UTC).date()
    days = {today - timedelta(days=n) for n in range(DAILY_KEEP)}
    weeks = {(today - timedelta(weeks=n)).isocalendar()[:2] for n in range(WEEKLY_KEEP)}
    # The newest backup not stamped ahead of now survives whatever its age: an old
    # backup is better than none.
    past = [path for when, path in backups if when <= now]
    keep = set(past[:1])
    seen_days: set[date] = set()
    seen_weeks: set[tuple[int, ...]] = set()
    for when, path in backups:  # newest first: the first seen of a day or week is its newest
        if when > now:
            keep.add(path)
            continue
        day, week = when.date(), when.isocalendar()[:2]
        if day in days and day not in seen_days:
            keep.add(path)
        if week in weeks and week not in seen_weeks:
            keep.add(path)
        seen_days.add(day)
        seen_weeks.add(week)
    deleted = []
    for _, path in backups:
        if path not in keep:
            path.unlink(missing_ok=True)
            deleted.append(path)
    return deleted


def _connect(path: Path, mode: str) -> sqlite3.Connection:
    # A URI with an explicit mode: plain connect() would create an empty database
    # where a path is wrong, and a backup of nothing must not look like success.
    uri = f"{path.resolve().as_uri()}?mode={mode}"
    return sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)


def _create_private(path: Path) -> None:
    # Made 0600 before SQLite writes a byte: the copy holds customer data.
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.close(fd)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy(src_path: Path, dst_path: Path, src_mode: str) -> None:
    """Copy a database into a new private single file with the backup API."""
    _create_private(dst_path)
    with closing(_connect(src_path, src_mode)) as src, closing(_connect(dst_path, "rw")) as dst:
        # pages=-1 copies everything in one step under one read transaction: a
        # consistent snapshot. Copying in slices would restart each time a writer
        # commits and might never finish on a busy database.
        src.backup(dst, pages=-1)
        # The copy inherits WAL mode; switch it back so the file is complete alone.
        dst.execute("PRAGMA journal_mode=DELETE").fetchall()


def _integrity_problem(path: Path) -> str | None:
    """None when `PRAGMA integrity_check` says "ok", else what it (or SQLite) said."""
    try:
        with closing(_connect(path, "ro")) as conn:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    if [tuple(r) for r in rows] == [("ok",)]:
        return None
    # SQLite reports up to 100 problems, several per row: one line says enough.
    lines = [s for r in rows for s in str(r[0]).splitlines() if s and not s.startswith("***")]
    more = f" (and {len(lines) - 2} more)" if len(lines) > 2 else ""
    return "; ".join(lines[:2]) + more


def _backup_sync(db_path: Path, backup_dir: Path, now: datetime) -> Path:
    if not db_path.is_file():
        raise BackupError(f"no database at {db_path}")
    backup_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    backup_dir.chmod(0o700)
    for stale in backup_dir.glob(f".{PREFIX}*.db.partial"):
        match = _PARTIAL.match(stale.name)
        if match and _parse_stamp(match.group(1)) < now - STALE_PARTIAL:
            stale.unlink(missing_ok=True)
    final = backup_dir / backup_name(now)
    partial = backup_dir / f".{final.name}.partial"
    partial.unlink(missing_ok=True)
    try:
        _copy(db_path, partial, "rw")  # rw: a WAL reader may need to create the -shm
        problem = _integrity_problem(partial)
        if problem is not None:
            raise BackupError(f"backup of {db_path} failed the integrity check: {problem}")
        _fsync(partial)
        os.replace(partial, final)  # atomic: a finished name is always a whole, good copy
        _fsync(backup_dir)
    except sqlite3.Error as exc:
        raise BackupError(f"backup of {db_path} failed: {exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    return final


async def backup_database(
    db_path: Path, backup_dir: Path, now: datetime, s3_url: str = ""
) -> BackupResult:
    """Back up, check, prune, then copy off-machine when `s3_url` is set.

    The file is named after `now` (UTC). An upload failure raises `BackupError` after
    the local copy is safely in place, and says so."""
    path = await asyncio.to_thread(_backup_sync, db_path, backup_dir, now)
    pruned = tuple(await asyncio.to_thread(prune, backup_dir, now))
    key = None
    if s3_url:
        try:
            target = parse_s3_url(s3_url)
            key = await asyncio.to_thread(upload, target, path)
        except BackupError as exc:
            raise BackupError(f"backup kept at {path}, but {exc}") from None
    return BackupResult(path, path.stat().st_size, key, pruned)


_HOST_PORT = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>\d{1,5}))?$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def parse_s3_url(url: str) -> S3Target:
    """`s3://KEY:SECRET@host[:port]/bucket/prefix` (https), or `s3+http://...` for a
    local stand-in; `?region=` is optional. Errors name the problem, never the URL."""
    scheme, sep, rest = url.strip().partition("://")
    schemes = {"s3": "https", "s3+http": "http"}
    if not sep or scheme.lower() not in schemes:
        raise BackupError("BACKUP_S3_URL must start with s3:// or s3+http://")
    rest, _, query = rest.partition("?")
    # Split at the last "@": secret keys may hold "/" (and "@" if percent-encoded).
    userinfo, at, location = rest.rpartition("@")
    if not at:
        raise BackupError("BACKUP_S3_URL has no KEY:SECRET@ before the host")
    access_key, colon, secret_key = userinfo.partition(":")
    if not colon or not access_key or not secret_key:
        raise BackupError("BACKUP_S3_URL credentials must be KEY:SECRET")
    host_port, _, path = location.partition("/")
    match = _HOST_PORT.match(host_port)
    if match is None:
        raise BackupError("BACKUP_S3_URL has no valid host[:port] after the @")
    port = match.group("port")
    if port is not None and not 0 < int(port) < 65536:
        raise BackupError("BACKUP_S3_URL port must be between 1 and 65535")
    bucket, _, prefix = path.partition("/")
    if not _BUCKET.match(bucket):
        raise BackupError("BACKUP_S3_URL must name a bucket (3-63 of a-z 0-9 . -) after the host")
    prefix = prefix.strip("/")
    return S3Target(
        endpoint_url=f"{schemes[scheme.lower()]}://{host_port}",
        bucket=bucket,
        prefix=f"{prefix}/" if prefix else "",
        access_key=unquote(access_key),
        secret_key=unquote(secret_key),
        region=parse_qs(query).get("region", [DEFAULT_REGION])[-1],
    )


def upload(target: S3Target, path: Path) -> str:
    """Upload one file (blocking; run it in a thread); returns the object key."""
    # Imported here: boto3 takes a noticeable time to import, and only backups need it.
    import boto3
    from boto3.exceptions import Boto3Error
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    key = target.prefix + path.name
    config = Config(
        s3={"addressing_style": "path"},  # stand-ins and many providers lack bucket DNS names
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
        # Newer botocore adds CRC checksums by default, which several S3-compatible
        # stores reject; the integrity check above already vouches for the file.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    try:
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=target.endpoint_url,
            aws_access_key_id=target.access_key,
            aws_secret_access_key=target.secret_key,
            region_name=target.region,
            config=config,
        )
        client.upload_file(str(path), target.bucket, key)
    except (Boto3Error, BotoCoreError, ClientError, OSError, ValueError) as exc:
        # upload_file wraps the service's answer (a ClientError) in its own
        # S3UploadFailedError; the answer's code is what the operator needs.
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, ClientError):
            cause = cause.__cause__ or cause.__context__
        if isinstance(cause, ClientError):
            error = cause.response.get("Error", {})
            detail = f"{error.get('Code', 'error')}: {error.get('Message', '')}".rstrip(": ")
        else:
            detail = f"{type(exc).__name__}: {exc}"
        raise BackupError(_redact(f"copy to S3 failed: {detail}", target)) from None
    return key


def _redact(text: str, target: S3Target) -> str:
    # Services and botocore sometimes echo the key id or the address back; no part
    # of BACKUP_S3_URL leaves here.
    for secret in (target.secret_key, target.access_key):
        if secret:
            text = text.replace(secret, "***")
    return text.replace(target.endpoint_url, "<BACKUP_S3_URL endpoint>")


@contextmanager
def _service_lock(db_path: Path) -> Iterator[None]:
    """Hold the lock `app/service.py` takes (`<db>.lock`, flock), so `restore` refuses
    while the service runs and the service cannot start halfway through a restore."""
    lock_path = db_path.with_name(db_path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RestoreError(
                f"openclaw-hosted is running on {db_path} (it holds {lock_path}); stop it first"
            ) from None
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _check_ours(path: Path, source: Path) -> None:
    problem = _integrity_problem(path)
    if problem is not None:
        raise RestoreError(f"{source} failed the integrity check: {problem}")
    with closing(_connect(path, "ro")) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if "instances" not in tables or version < 1:
        raise RestoreError(f"{source} is not an openclaw-hosted database")
    latest = len(available())
    if version > latest:
        raise RestoreError(
            f"{source} is at schema version {version}, newer than this program's {latest}"
        )


def _keep_current(db_path: Path, now: datetime) -> Path | None:
    """Move the current database aside, -wal included: it may hold committed
    transactions, and SQLite finds it again under the new name + "-wal"."""
    if not db_path.exists():
        return None
    stamp = now.astimezone(UTC).strftime(_STAMP)
    kept, n = db_path.with_name(f"{db_path.name}.before-restore-{stamp}"), 1
    while kept.exists():
        n += 1
        kept = db_path.with_name(f"{db_path.name}.before-restore-{stamp}-{n}")
    wal = db_path.with_name(db_path.name + "-wal")
    if wal.exists():
        os.replace(wal, kept.with_name(kept.name + "-wal"))
    os.replace(db_path, kept)
    # The -shm is only an index of the -wal; a stale one must not meet the new file.
    db_path.with_name(db_path.name + "-shm").unlink(missing_ok=True)
    return kept


def _restore_sync(backup_file: Path, db_path: Path, now: datetime) -> Path | None:
    if not backup_file.is_file():
        raise RestoreError(f"no backup file at {backup_file}")
    db_path.parent.mkdir(parents=True, exist_ok=True)
    with _service_lock(db_path):
        staged = db_path.with_name(f".{db_path.name}.restore-partial")
        staged.unlink(missing_ok=True)
        try:
            # Checked on our own copy, so the file we vouch for is the one put in place.
            _copy(backup_file, staged, "ro")
            _check_ours(staged, backup_file)
            _fsync(staged)
            kept = _keep_current(db_path, now)
            os.replace(staged, db_path)  # 0600 since _create_private made it
            _fsync(db_path.parent)
        except sqlite3.Error as exc:
            raise RestoreError(f"{backup_file} is not a usable SQLite database: {exc}") from None
        finally:
            staged.unlink(missing_ok=True)
    return kept


async def restore_database(
    backup_file: Path, db_path: Path, now: datetime | None = None
) -> Path | None:
    """Put a backup in place of the database; the service must be stopped.

    The backup is checked first (integrity, and that it is ours); the current
    database is kept as `<db>.before-restore-<UTC>`, whose path is returned (None when
    there was none). `now` names that file (default: the system clock)."""
    when = now or datetime.now(UTC)
    return await asyncio.to_thread(_restore_sync, backup_file, db_path, when)
