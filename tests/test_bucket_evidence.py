"""Bucket evidence (f5guard/cloud/bucket.py): a file under the mount is in the cloud once the bucket holds its object
with its size and checksum. The real SDKs (google-cloud-storage, boto3) ask a real HTTP bucket on 127.0.0.1
(tests/bucketsim.py) whose objects are files of a folder: only the network is stood in for."""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from f5guard.cloud import bucket as bucketmod
from f5guard.cloud.bucket import BucketStore, BucketURL, client
from f5guard.cloud.detect import open_configured
from f5guard.cloud.evidence import Where, WritebackStore
from f5guard.cloud.survey import upload_probe
from f5guard.config import parse_config
from f5guard.errors import ConfigError
from f5guard.schema import StoreSettings
from tests.bucketsim import Bucket, BucketSim

pytest.importorskip("google.cloud.storage")
pytest.importorskip("boto3")


@pytest.fixture
def sim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[BucketSim]:
    buckets = {name: Bucket(tmp_path / "buckets" / name) for name in ("gcs", "single", "parts", "bare", "crc")}
    buckets["parts"].multipart_bytes = buckets["bare"].multipart_bytes = 1000
    buckets["bare"].rclone_md5 = False
    buckets["crc"].full_crc32 = True
    for b in buckets.values():
        b.root.mkdir(parents=True)
    with BucketSim(buckets) as made:
        for key, value in made.env().items():
            monkeypatch.setenv(key, value)
        bucketmod._CLIENTS.clear()  # one client per bucket and process: a fresh one for this endpoint
        yield made
    bucketmod._CLIENTS.clear()


def _store(url: str, mount: Path, *, verify_bytes: int | None = None) -> BucketStore:
    parsed = BucketURL.parse(url)
    fallback = WritebackStore("estimate", delay_s=60, bytes_per_s=1e6)
    return BucketStore("test", parsed, mount, fallback, objects=lambda: client(parsed), verify_bytes=verify_bytes)


def _upload(sim: BucketSim, name: str, mount: Path, rel: str, data: bytes | None = None) -> None:
    target = sim.buckets[name].root / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    if data is None:
        shutil.copyfile(mount / rel, target)
    else:
        target.write_bytes(data)


@pytest.mark.parametrize(("name", "url", "proof"), [
    ("gcs", "gs://gcs", "size and crc32c match"),
    ("single", "s3://single", "size and md5 match"),  # a single-part ETag is the md5
    ("parts", "s3://parts", "size and md5 match"),  # rclone's md5chksum of a multipart upload
    ("crc", "s3://crc", "size and crc32 match"),  # a full-object CRC32 beats an md5: cheaper
    ("bare", "s3://bare", "size matches (the store offers no checksum of this object)"),  # multipart, no md5
])  # fmt: skip
def test_in_the_cloud_once_the_object_has_the_size_and_checksum(
    sim: BucketSim, tmp_path: Path, name: str, url: str, proof: str
) -> None:
    """Absent from the bucket, shorter there, other bytes of the same size: uploading, never in the cloud."""
    mount = tmp_path / "mount"
    rel = "home/runs/v/checkpoints/ckpt-e0001-u000000010-ab.pt"
    (mount / rel).parent.mkdir(parents=True)
    (mount / rel).write_bytes(bytes(range(256)) * 10)
    store = _store(url, mount)
    seen = store.look(mount / rel)
    assert (seen.where, seen.estimated) == (Where.UPLOADING, False) and "not in" in seen.detail, seen
    _upload(sim, name, mount, rel, b"x" * 100)
    seen = store.look(mount / rel)
    assert seen.where is Where.UPLOADING and "holds 100 bytes, the file 2560" in seen.detail, seen
    _upload(sim, name, mount, rel, b"y" * 2560)
    seen = store.look(mount / rel)
    if name == "bare":  # no checksum to tell: the size decides, and says so
        assert seen.where is Where.CLOUD and proof in seen.detail, seen
    else:
        assert seen.where is Where.UPLOADING and "other bytes of the same size" in seen.detail, seen
    _upload(sim, name, mount, rel)
    seen = store.look(mount / rel)
    assert (seen.where, seen.estimated, seen.size) == (Where.CLOUD, False, 2560) and proof in seen.detail, seen
    asked = len(sim.calls)
    assert store.look(mount / rel) == seen
    if name != "bare":
        assert len(sim.calls) == asked, "a checksum-proven version is not asked for again"
    assert store.look(mount / "nothing.pt").where is Where.ABSENT


def test_a_prefix_maps_the_mount_and_r2_takes_an_endpoint(sim: BucketSim, tmp_path: Path) -> None:
    """``gs://b/pre`` mounted at M: M/x is the object pre/x. r2:// is S3 at the endpoint named in [store]."""
    mount = tmp_path / "m"
    mount.mkdir()
    (mount / "x.pt").write_bytes(b"abc" * 100)
    _upload(sim, "gcs", mount, "x.pt")  # at the bucket's root, not under the prefix: not it
    store = _store("gs://gcs/pre/fix", mount)
    assert store.look(mount / "x.pt").where is Where.UPLOADING
    _upload(sim, "gcs", mount, "pre/fix/x.pt", (mount / "x.pt").read_bytes())
    seen = store.look(mount / "x.pt")
    assert seen.where is Where.CLOUD and "gs://gcs/pre/fix/x.pt" in seen.detail, seen
    r2 = BucketURL.parse("r2://single")
    fallback = WritebackStore("estimate", delay_s=60, bytes_per_s=1e6)
    store = BucketStore("r2", r2, mount, fallback, objects=lambda: client(r2, sim.url))
    _upload(sim, "single", mount, "x.pt")
    assert store.look(mount / "x.pt").where is Where.CLOUD


def test_status_reads_no_large_file_to_checksum_it(sim: BucketSim, tmp_path: Path) -> None:
    """``verify_bytes`` (status): above it the size decides, and the words say the daemon compares checksums."""
    mount = tmp_path / "m"
    mount.mkdir()
    (mount / "big.pt").write_bytes(b"a" * 5000)
    _upload(sim, "gcs", mount, "big.pt", b"b" * 5000)
    quick = _store("gs://gcs", mount, verify_bytes=1000).look(mount / "big.pt")
    assert quick.where is Where.CLOUD and "compared by the daemon" in quick.detail, quick
    assert _store("gs://gcs", mount).look(mount / "big.pt").where is Where.UPLOADING


def test_no_sdk_or_no_answer_is_the_estimate_shown_as_such(
    sim: BucketSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without boto3 the store is the writeback estimate and says what to install; a bucket that does not
    answer gives the estimate for that look, with the reason."""
    settings = StoreSettings(kind="auto", bucket="s3://single", mount=str(tmp_path))
    monkeypatch.setitem(sys.modules, "boto3", None)
    store = open_configured(tmp_path, settings, delay_s=60)
    assert store.kind == "writeback" and store.estimated
    assert "boto3 is not installed (pip install 'f5guard[s3]')" in store.how
    monkeypatch.delitem(sys.modules, "boto3")
    store = open_configured(tmp_path, settings, delay_s=60)
    assert store.kind == "bucket" and not store.estimated, store.how
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")  # discard port: nobody answers
    bucketmod._CLIENTS.clear()
    (tmp_path / "f.pt").write_bytes(b"z")
    seen = store.look(tmp_path / "f.pt")
    assert seen.estimated and "s3://single did not answer" in seen.detail, seen


def test_config_names_the_bucket_or_the_environment_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """[store] bucket/mount/endpoint, or $F5GUARD_STORE_* (the SkyPilot task's): the config's keys win; bad
    values are one line naming the key."""
    base = {"home": str(tmp_path / "home"), "work": str(tmp_path / "work"),
            "runs": [{"name": "r", "stages": [{"name": "s", "command": ["true"]}]}]}  # fmt: skip
    monkeypatch.delenv("F5GUARD_STORE_BUCKET", raising=False)
    path = tmp_path / "f5guard.toml"
    with pytest.raises(ConfigError, match=r'store.kind: kind = "bucket" needs the bucket'):
        parse_config({**base, "store": {"kind": "bucket"}}, path, find_python=False)
    with pytest.raises(ConfigError, match=r"store.bucket: must start with gs://, s3://, r2://"):
        parse_config({**base, "store": {"bucket": "ftp://x"}}, path, find_python=False)
    with pytest.raises(ConfigError, match=r"store.mount: must be an absolute path"):
        parse_config({**base, "store": {"bucket": "gs://x", "mount": "rel"}}, path, find_python=False)
    monkeypatch.setenv("F5GUARD_STORE_BUCKET", "gs://from-env")
    monkeypatch.setenv("F5GUARD_STORE_MOUNT", "/mnt/b")
    store = parse_config(base, path, find_python=False).store
    assert (store.bucket, store.mount) == ("gs://from-env", "/mnt/b")
    store = parse_config({**base, "store": {"bucket": "s3://mine"}}, path, find_python=False).store
    assert (store.bucket, store.mount) == ("s3://mine", "/mnt/b")


def test_doctor_times_an_upload_by_the_buckets_answer(sim: BucketSim, tmp_path: Path) -> None:
    """`f5guard doctor`'s timed upload on a bucket home: the probe counts as in the cloud once its object is there
    (here a thread plays rclone, copying the finished file into the bucket after a second)."""
    mount = tmp_path / "m"
    home = mount / "home"
    home.mkdir(parents=True)
    size = 256 * 1024
    stop = threading.Event()

    def rclone() -> None:
        while not stop.is_set():
            for probe in home.rglob("doctor-probe-*"):
                if probe.stat().st_size == size:
                    time.sleep(1.0)
                    _upload(sim, "gcs", mount, probe.relative_to(mount).as_posix())
                    return
            time.sleep(0.05)

    uploader = threading.Thread(target=rclone, daemon=True)
    uploader.start()
    try:
        found = upload_probe(home, _store("gs://gcs", mount), size, timeout_s=30)
    finally:
        stop.set()
        uploader.join(timeout=10)
    assert "in the cloud after" in found.value and not found.blocking, found
