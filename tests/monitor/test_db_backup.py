"""Database backups: online copies while writers run, retention, S3, and restore."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from app.service import AlreadyRunning, acquire_lock
from db.connection import Database
from db.migrations import available
from monitor.db_backup import (
    BackupError,
    RestoreError,
    backup_database,
    backup_due,
    backup_name,
    parse_s3_url,
    prune,
    restore_database,
)

T0 = datetime(2026, 11, 25, 3, 15, tzinfo=UTC)  # a Wednesday, ISO week 48
# Access keys in the shape AWS issues them; the secret holds "/" and "+" on purpose.
KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


async def add_customers(db: Database, *ids: str) -> None:
    async with db.transaction() as conn:
        for cid in ids:
            await conn.execute(
                "INSERT INTO customers (id, email, created_at, updated_at) VALUES (?, ?, ?, ?)",
                (cid, f"{cid}@example.com", "2026-11-25T00:00:00Z", "2026-11-25T00:00:00Z"),
            )


def customer_ids(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM customers")}


def integrity(path: Path) -> str:
    with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def corrupt(path: Path) -> None:
    """Scribble over b-tree pages past the header: still SQLite, no longer sound."""
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) >= 6 * page
    for n in (3, 4, 5):
        data[n * page + 100 : n * page + 4000] = bytes(range(256)) * 15 + bytes(60)
    path.write_bytes(bytes(data))


async def wait_until(condition: Callable[[], bool]) -> None:
    for _ in range(10_000):  # bounded: a stuck writer fails the test instead of hanging it
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition never met")


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "data" / "openclaw-hosted.db")
    # Enough rows for several pages, so corruption tests have pages to spoil.
    await add_customers(database, *(f"cust_seed{n:04d}" for n in range(300)))
    yield database
    await database.close()  # a no-op where the test closed it (as restore needs)


# ---- backup ----


async def test_backup_while_writers_run_is_a_consistent_checked_private_copy(
    tmp_path: Path, db: Database
) -> None:
    backup_dir = tmp_path / "backups"
    written = 0
    stop = asyncio.Event()

    async def writer() -> None:
        # Each transaction adds a pair: a consistent copy never holds half a pair.
        nonlocal written
        while not stop.is_set():
            await add_customers(db, f"cust_{written:05d}a", f"cust_{written:05d}b")
            written += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(writer())
    await wait_until(lambda: written >= 20)
    result = await backup_database(db.path, backup_dir, T0)
    at_backup = written
    await wait_until(lambda: written >= at_backup + 20)  # writers go on after the copy
    stop.set()
    await task
    await db.close()

    assert result.path == backup_dir / "openclaw-hosted-20261125T031500Z.db"
    assert result.size == result.path.stat().st_size > 0
    assert result.uploaded_key is None and result.pruned == ()
    assert sorted(p.name for p in backup_dir.iterdir()) == [result.path.name]  # no temp left
    assert result.path.stat().st_mode & 0o777 == 0o600
    assert backup_dir.stat().st_mode & 0o777 == 0o700
    assert integrity(result.path) == "ok"
    header = result.path.read_bytes()[:100]
    assert header[18:20] == b"\x01\x01"  # rollback-journal mode: the file stands alone

    copied = customer_ids(result.path) - {f"cust_seed{n:04d}" for n in range(300)}
    pairs = {cid[:-1] for cid in copied}
    assert copied == {p + s for p in pairs for s in "ab"}
    assert 20 <= len(pairs) < written
    with closing(sqlite3.connect(result.path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(available())


async def test_a_corrupt_database_gives_no_backup(tmp_path: Path, db: Database) -> None:
    await db.close()
    corrupt(db.path)
    backup_dir = tmp_path / "backups"
    with pytest.raises(BackupError, match="integrity check"):
        await backup_database(db.path, backup_dir, T0)
    assert list(backup_dir.iterdir()) == []
    assert backup_due(backup_dir, T0)


async def test_backing_up_a_missing_database_fails_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    with pytest.raises(BackupError, match="no database"):
        await backup_database(missing, tmp_path / "backups", T0)
    assert not missing.exists()


async def test_backup_due_is_read_from_the_names_on_disk(tmp_path: Path, db: Database) -> None:
    backup_dir = tmp_path / "backups"
    assert backup_due(backup_dir, T0)  # no folder yet
    await backup_database(db.path, backup_dir, T0)
    await db.close()
    (backup_dir / "notes.txt").write_text("not a backup")
    assert not backup_due(backup_dir, T0)
    assert not backup_due(backup_dir, T0 + timedelta(hours=23, minutes=59))
    assert backup_due(backup_dir, T0 + timedelta(hours=24))
    # A clock that went back: a backup "from the future" must not hold off new ones.
    assert backup_due(backup_dir, T0 - timedelta(hours=1))


async def test_a_partial_file_left_by_a_crash_is_cleaned_later(
    tmp_path: Path, db: Database
) -> None:
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    crashed = backup_dir / f".{backup_name(T0 - timedelta(hours=2))}.partial"
    running = backup_dir / f".{backup_name(T0 - timedelta(minutes=10))}.partial"
    crashed.write_bytes(b"half a copy")
    running.write_bytes(b"maybe still being written")
    await backup_database(db.path, backup_dir, T0)
    assert not crashed.exists() and running.exists()
    assert not backup_due(backup_dir, T0)  # partial files never count as backups


# ---- retention ----


def names(backup_dir: Path) -> list[str]:
    return sorted(p.name for p in backup_dir.glob("openclaw-hosted-*.db"))


async def test_retention_keeps_7_daily_and_4_weekly_across_simulated_days(
    tmp_path: Path, db: Database
) -> None:
    backup_dir = tmp_path / "backups"
    day = datetime(2026, 10, 1, 3, 15, tzinfo=UTC)
    while day < T0:  # a daily job, Oct 1 to Nov 24, deciding from the disk each time
        assert backup_due(backup_dir, day)
        result = await backup_database(db.path, backup_dir, day)
        assert result.path.exists()
        assert len(names(backup_dir)) <= 7 + 4
        day += timedelta(days=1)
    # An extra backup in the afternoon of Nov 24 replaces that day's morning one…
    afternoon = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
    result = await backup_database(db.path, backup_dir, afternoon)
    assert result.pruned == (backup_dir / backup_name(afternoon.replace(hour=3, minute=15)),)
    # …and makes the next morning's run wait: it is less than 24 hours old.
    assert not backup_due(backup_dir, T0)
    later = T0.replace(hour=15, minute=1)
    assert backup_due(backup_dir, later)
    result = await backup_database(db.path, backup_dir, later)
    assert result.pruned == (backup_dir / backup_name(T0 - timedelta(days=7)),)  # Nov 18
    await db.close()

    kept = [datetime(2026, 11, d, 3, 15, tzinfo=UTC) for d in (8, 15, 19, 20, 21, 22, 23)]
    # 7 days (Nov 19-25, the newest of each) and the newest of ISO weeks 45-48.
    expected = [backup_name(when) for when in [*kept, afternoon, later]]
    assert names(backup_dir) == sorted(expected)
    # Pruning again the same day changes nothing; a month on, the newest survives.
    assert prune(backup_dir, later) == []
    deleted = prune(backup_dir, later + timedelta(days=60))
    assert names(backup_dir) == [backup_name(later)]
    assert len(deleted) == len(expected) - 1


def test_prune_keeps_what_it_does_not_own_and_what_is_stamped_ahead(tmp_path: Path) -> None:
    for when in (T0 - timedelta(days=100), T0 - timedelta(days=90), T0 + timedelta(days=2)):
        (tmp_path / backup_name(when)).write_bytes(b"")
    (tmp_path / "openclaw-hosted.db.before-restore-20261101T000000Z").write_bytes(b"")
    (tmp_path / "readme.txt").write_bytes(b"")
    deleted = prune(tmp_path, T0)
    assert [p.name for p in deleted] == [backup_name(T0 - timedelta(days=100))]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [
            backup_name(T0 - timedelta(days=90)),  # the newest not ahead of now
            backup_name(T0 + timedelta(days=2)),
            "openclaw-hosted.db.before-restore-20261101T000000Z",
            "readme.txt",
        ]
    )


# ---- restore ----


async def test_restore_puts_the_old_rows_back_and_keeps_the_current_database(
    tmp_path: Path, db: Database
) -> None:
    await add_customers(db, "cust_before")
    result = await backup_database(db.path, tmp_path / "backups", T0)
    await add_customers(db, "cust_after")
    async with db.transaction() as conn:
        await conn.execute("DELETE FROM customers WHERE id = 'cust_before'")
    await db.close()
    later = T0 + timedelta(hours=5)

    kept = await restore_database(result.path, db.path, later)

    assert kept == db.path.with_name("openclaw-hosted.db.before-restore-20261125T081500Z")
    ids = customer_ids(db.path)
    assert "cust_before" in ids and "cust_after" not in ids
    kept_ids = customer_ids(kept)
    assert "cust_after" in kept_ids and "cust_before" not in kept_ids
    assert db.path.stat().st_mode & 0o777 == 0o600
    assert not db.path.with_name(db.path.name + "-shm").exists()
    assert integrity(db.path) == "ok"
    assert result.path.exists()  # the backup itself is left alone
    # The service opens it as usual; nothing left to migrate.
    reopened = await Database.open(db.path)
    assert await reopened.migrate() == []
    assert await reopened.fetch_one("SELECT id FROM customers WHERE id = 'cust_before'")
    await reopened.close()


async def test_restore_refuses_a_corrupt_or_foreign_file_and_changes_nothing(
    tmp_path: Path, db: Database
) -> None:
    result = await backup_database(db.path, tmp_path / "backups", T0)
    await db.close()
    before = db.path.read_bytes()
    corrupted = tmp_path / "corrupted.db"
    corrupted.write_bytes(result.path.read_bytes())
    corrupt(corrupted)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database at all" * 200)
    foreign = tmp_path / "foreign.db"
    with closing(sqlite3.connect(foreign)) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
    newer = tmp_path / "newer.db"
    newer.write_bytes(result.path.read_bytes())
    with closing(sqlite3.connect(newer)) as conn:
        conn.execute(f"PRAGMA user_version = {len(available()) + 1}")

    for path, reason in (
        (corrupted, "integrity check"),
        (garbage, "not a usable SQLite database"),
        (foreign, "not an openclaw-hosted database"),
        (newer, "newer than this program"),
        (tmp_path / "missing.db", "no backup file"),
    ):
        with pytest.raises(RestoreError, match=reason) as info:
            await restore_database(path, db.path, T0)
        assert "\n" not in str(info.value)

    assert db.path.read_bytes() == before
    left = sorted(p.name for p in db.path.parent.iterdir())
    assert left == ["openclaw-hosted.db", "openclaw-hosted.db.lock"]


async def test_restore_refuses_while_the_service_holds_its_lock(
    tmp_path: Path, db: Database
) -> None:
    await add_customers(db, "cust_before")
    result = await backup_database(db.path, tmp_path / "backups", T0)
    await db.close()
    lock = acquire_lock(db.path)  # what `openclaw-hosted run` holds while it runs
    try:
        with pytest.raises(RestoreError, match="running"):
            await restore_database(result.path, db.path, T0)
        assert not list(db.path.parent.glob("*.before-restore-*"))
    finally:
        lock.close()
    assert await restore_database(result.path, db.path, T0) is not None


async def test_the_service_cannot_start_while_a_restore_holds_the_lock(tmp_path: Path) -> None:
    # restore takes the very lock the service takes, so neither runs during the other.
    from monitor.db_backup import _service_lock

    path = tmp_path / "openclaw-hosted.db"
    with _service_lock(path), pytest.raises(AlreadyRunning):
        acquire_lock(path)


# ---- S3 ----


@dataclass
class S3Stand:
    endpoint: str
    host_port: str

    def client(self, key: str = KEY, secret: str = SECRET) -> Any:  # boto3 has no types
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            region_name="us-east-1",
        )

    def set_auth(self, value: str) -> None:
        """moto checks credentials only after this many requests ("inf": never)."""
        request = urllib.request.Request(  # noqa: S310 (http to the loopback stand-in)
            f"{self.endpoint}/moto-api/reset-auth",
            data=value.encode(),
            method="POST",
            headers={"Content-Type": "text/plain"},  # not a form: moto reads the raw body
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            assert response.status == 200


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Stand]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield S3Stand(f"http://{host}:{port}", f"{host}:{port}")
    finally:
        server.stop()


async def test_the_backup_lands_in_the_bucket(tmp_path: Path, db: Database, s3: S3Stand) -> None:
    s3.client().create_bucket(Bucket="oc-backups")
    url = f"s3+http://{KEY}:{SECRET}@{s3.host_port}/oc-backups/hosted/db/"
    result = await backup_database(db.path, tmp_path / "backups", T0, url)
    await db.close()
    assert result.uploaded_key == "hosted/db/openclaw-hosted-20261125T031500Z.db"
    body = s3.client().get_object(Bucket="oc-backups", Key=result.uploaded_key)
    assert body["Body"].read() == result.path.read_bytes()


async def test_wrong_credentials_keep_the_local_copy_and_never_show_the_secret(
    tmp_path: Path, db: Database, s3: S3Stand
) -> None:
    admin = boto3.client(
        "iam",
        endpoint_url=s3.endpoint,
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
    )
    admin.create_user(UserName="backups")
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
    }
    admin.put_user_policy(UserName="backups", PolicyName="s3", PolicyDocument=json.dumps(policy))
    access = admin.create_access_key(UserName="backups")["AccessKey"]
    good_key, good_secret = access["AccessKeyId"], access["SecretAccessKey"]
    s3.client().create_bucket(Bucket="oc-auth")
    wrong_secret = "Zm9vYmFy/wrong+secret0123456789abcdefghij"
    s3.set_auth("0")
    try:
        for key, secret, code in (
            (good_key, wrong_secret, "SignatureDoesNotMatch"),
            ("AKIANOSUCHKEY0000000", wrong_secret, "InvalidAccessKeyId"),
        ):
            url = f"s3+http://{key}:{secret}@{s3.host_port}/oc-auth/x"
            with pytest.raises(BackupError) as info:
                await backup_database(db.path, tmp_path / "backups", T0, url)
            text = str(info.value)
            assert f"copy to S3 failed: {code}" in text and "backup kept at" in text
            assert secret not in text and key not in text and s3.host_port not in text
        assert (tmp_path / "backups" / backup_name(T0)).exists()
        url = f"s3+http://{good_key}:{good_secret}@{s3.host_port}/oc-auth/x"
        result = await backup_database(db.path, tmp_path / "backups", T0 + timedelta(days=1), url)
        assert result.uploaded_key == f"x/{backup_name(T0 + timedelta(days=1))}"
    finally:
        s3.set_auth("inf")
        await db.close()


async def test_an_unreachable_endpoint_is_an_error_without_the_url(
    tmp_path: Path, db: Database
) -> None:
    url = f"s3+http://{KEY}:{SECRET}@127.0.0.1:9/oc-backups"  # nothing listens on port 9
    with pytest.raises(BackupError) as info:
        await backup_database(db.path, tmp_path / "backups", T0, url)
    await db.close()
    text = str(info.value)
    assert "copy to S3 failed" in text
    assert SECRET not in text and KEY not in text and "127.0.0.1:9" not in text


@pytest.mark.parametrize(
    "url",
    [
        f"https://{KEY}:{SECRET}@s3.example.com/bucket",
        f"s3://{SECRET}@s3.example.com/bucket",
        f"s3://{KEY}:@s3.example.com/bucket",
        f"s3://{KEY}:{SECRET}@s3.example.com:99999/bucket",
        f"s3://{KEY}:{SECRET}@s3.example.com:port/bucket",
        f"s3://{KEY}:{SECRET}@s3.example.com",
        f"s3://{KEY}:{SECRET}@s3.example.com/Not_A_Bucket/x",
        f"s3://{KEY}:{SECRET}@/bucket",
        f"s3 {KEY}:{SECRET}",
    ],
)
async def test_a_bad_url_names_the_problem_not_the_secret(
    tmp_path: Path, db: Database, url: str
) -> None:
    with pytest.raises(BackupError) as info:
        parse_s3_url(url)
    text = str(info.value)
    assert "BACKUP_S3_URL" in text
    assert SECRET not in text and KEY not in text and "example" not in text
    # Through the backup itself: the local copy is made, the error still hides the URL.
    with pytest.raises(BackupError) as info:
        await backup_database(db.path, tmp_path / "backups", T0, url)
    await db.close()
    assert SECRET not in str(info.value) and "backup kept at" in str(info.value)


def test_s3_url_forms() -> None:
    target = parse_s3_url(f"s3://{KEY}:{SECRET}@fsn1.your-objectstorage.com/oc-db/a/b?region=eu")
    assert (target.endpoint_url, target.bucket, target.prefix, target.region) == (
        "https://fsn1.your-objectstorage.com",
        "oc-db",
        "a/b/",
        "eu",
    )
    assert (target.access_key, target.secret_key) == (KEY, SECRET)
    assert SECRET not in repr(target) and KEY not in repr(target)
    local = parse_s3_url("s3+http://k:s%40cret@127.0.0.1:9000/bucket")
    assert (local.endpoint_url, local.prefix, local.region) == (
        "http://127.0.0.1:9000",
        "",
        "us-east-1",
    )
    assert local.secret_key == "s@cret"


def test_backup_names_carry_utc() -> None:
    plus_one = datetime(2026, 11, 25, 4, 15, 0, 999, tzinfo=UTC).astimezone(
        timezone(timedelta(hours=1))
    )
    assert backup_name(plus_one) == "openclaw-hosted-20261125T041500Z.db"
    assert os.sep not in backup_name(T0)
