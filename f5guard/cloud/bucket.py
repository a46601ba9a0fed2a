"""Home on a bucket mounted write-back (SkyPilot's ``MOUNT_CACHED``: rclone's VFS cache): like DriveFS, a file
written there is in the VM's cache first and uploads later, and dies with the VM until it has. Here the bucket
itself answers: a file is in the cloud once the bucket holds its object with the same size and, where the store
offers one cheaply, the same checksum (GCS: crc32c, else md5; S3/R2: the ETag of a single-part upload, rclone's
``md5chksum`` metadata of a multipart one, or a full-object checksum).

Asked through the bucket's own SDK (google-cloud-storage; boto3 for s3 and r2), only where it is importable:
without it, or when the bucket does not answer, the estimate by age and size (``WritebackStore``), shown as
estimated. Only ``client`` talks to the SDK; the rest is plain and tested for real.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.util
import os
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from f5guard.cloud.evidence import Evidence, Where, WritebackStore, _stat

SCHEMES = ("gs", "s3", "r2")
SDK = {"gs": ("google.cloud.storage", "f5guard[gcs]"), "s3": ("boto3", "f5guard[s3]"), "r2": ("boto3", "f5guard[s3]")}
QUICK_BYTES = 64 * 1024 * 1024  # status reads no larger file to checksum it: its size decides (the daemon checks)
_CHUNK = 8 * 1024 * 1024
# Cheapest first. crc32c needs google-crc32c (google-cloud-storage's own dependency); the others are stdlib.
ALGORITHMS = ("crc32c", "crc32", "md5", "sha256")


@dataclass(frozen=True)
class BucketURL:
    """``gs://name/prefix``: a bucket, and the folder of it that stands for the mount's root."""

    scheme: str
    name: str
    prefix: str = ""

    @classmethod
    def parse(cls, text: str) -> BucketURL:
        """Raises ValueError with the reason."""
        scheme, sep, rest = text.partition("://")
        if not sep or scheme not in SCHEMES:
            raise ValueError(f"must start with {', '.join(s + '://' for s in SCHEMES)}, got {text!r}")
        name, _, prefix = rest.partition("/")
        if not name or any(c in name for c in " \\") or any(ord(c) < 33 for c in name):
            raise ValueError(f"no bucket name in {text!r}")
        return cls(scheme, name, prefix.strip("/"))

    def key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def __str__(self) -> str:
        return f"{self.scheme}://{self.name}" + (f"/{self.prefix}" if self.prefix else "")


@dataclass(frozen=True)
class Remote:
    """What the bucket says of one object: its size and the checksums it offers (raw digests by algorithm)."""

    size: int
    checksums: dict[str, bytes] = field(default_factory=dict)


class Objects(Protocol):
    """One SDK's client, narrowed to the one question f5guard asks: the object at ``key``, or None."""

    def head(self, key: str) -> Remote | None: ...


def sdk_missing(scheme: str) -> str | None:
    """The pip extra to install when the SDK for ``scheme`` is not importable here, else None."""
    module, extra = SDK[scheme]
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing ("google")
        found = False
    return None if found else f"{module} is not installed (pip install '{extra}')"


def _b64(value: object) -> bytes | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        return None


class GcsObjects:
    """google-cloud-storage: ``get_blob`` (one GET of the object's metadata)."""

    def __init__(self, url: BucketURL, timeout_s: float) -> None:
        from google.cloud import storage

        self._bucket = storage.Client().bucket(url.name)
        self._timeout = timeout_s

    def head(self, key: str) -> Remote | None:
        blob = self._bucket.get_blob(key, timeout=self._timeout)
        if blob is None:
            return None
        sums = {"crc32c": _b64(blob.crc32c), "md5": _b64(blob.md5_hash)}  # md5: none for a composed object
        return Remote(int(blob.size or 0), {k: v for k, v in sums.items() if v})


class S3Objects:
    """boto3 (S3, R2): ``head_object`` with the object's checksums. R2 reads SkyPilot's Cloudflare files
    (~/.cloudflare/r2.credentials, profile r2; the endpoint from ~/.cloudflare/accountid) unless an endpoint is set."""

    def __init__(self, url: BucketURL, endpoint: str, timeout_s: float) -> None:
        import boto3
        from botocore.config import Config as BotoConfig

        session = boto3.Session()
        if url.scheme == "r2":
            credentials = Path("~/.cloudflare/r2.credentials").expanduser()
            if credentials.exists() and "AWS_ACCESS_KEY_ID" not in os.environ:
                core = session._session  # boto3 has no public way to name the credentials file
                core.set_config_variable("credentials_file", str(credentials))
                session = boto3.Session(botocore_session=core, profile_name="r2")
            if not endpoint:
                account = Path("~/.cloudflare/accountid").expanduser().read_text().strip()
                endpoint = f"https://{account}.r2.cloudflarestorage.com"
        custom = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        config = BotoConfig(connect_timeout=timeout_s, read_timeout=timeout_s, retries={"max_attempts": 2},
                            s3={"addressing_style": "path"} if custom else None)  # fmt: skip
        self._client = session.client("s3", endpoint_url=endpoint or None, config=config,
                                      region_name="auto" if url.scheme == "r2" else None)  # fmt: skip
        self._bucket = url.name

    def head(self, key: str) -> Remote | None:
        from botocore.exceptions import ClientError

        try:
            meta = self._client.head_object(Bucket=self._bucket, Key=key, ChecksumMode="ENABLED")
        except ClientError as err:
            if str(err.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return Remote(int(meta.get("ContentLength", 0)), s3_checksums(meta))


def s3_checksums(meta: dict[str, object]) -> dict[str, bytes]:
    """The checksums a HEAD of an S3 object proves its whole content by."""
    sums: dict[str, bytes] = {}
    etag = str(meta.get("ETag") or "").strip('"')
    if etag and "-" not in etag:  # a single-part upload's ETag is its md5 (not with SSE-KMS; a mismatch says so)
        with contextlib.suppress(ValueError):
            sums["md5"] = bytes.fromhex(etag)
    metadata = meta.get("Metadata")
    if "md5" not in sums and isinstance(metadata, dict) and (md5 := _b64(metadata.get("md5chksum"))):
        sums["md5"] = md5  # rclone records the whole file's md5 on a multipart upload
    if meta.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT":  # a composite one is a checksum of parts
        for name, algorithm in (("ChecksumCRC32C", "crc32c"), ("ChecksumCRC32", "crc32"), ("ChecksumSHA256", "sha256")):
            if digest := _b64(meta.get(name)):
                sums[algorithm] = digest
    return sums


_CLIENTS: dict[tuple[str, str, str, float], Objects] = {}
_CLIENTS_LOCK = threading.Lock()


def client(url: BucketURL, endpoint: str = "", timeout_s: float = 10.0) -> Objects:
    """The SDK client for ``url`` (one per bucket, endpoint and timeout in a process: creating one costs ~0.5 s),
    giving up on a request after ``timeout_s`` (boto3 retries once). Raises what the SDK raises (no credentials)."""
    key = (url.scheme, url.name, endpoint, timeout_s)
    with _CLIENTS_LOCK:
        if key not in _CLIENTS:
            made: Objects = GcsObjects(url, timeout_s) if url.scheme == "gs" else S3Objects(url, endpoint, timeout_s)
            _CLIENTS[key] = made
        return _CLIENTS[key]


def _crc32c() -> Callable[[bytes, int], int] | None:
    try:
        import google_crc32c
    except ImportError:
        return None
    extend: Callable[[bytes, int], int] = lambda data, crc: google_crc32c.extend(crc, data)  # noqa: E731
    return extend


def local_digest(path: Path, algorithm: str) -> bytes | None:
    """The raw digest of the file under ``algorithm`` (big-endian for the CRCs, as the stores send them); None
    when this Python cannot compute it."""
    if algorithm in ("md5", "sha256"):
        h = hashlib.new(algorithm)
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                h.update(chunk)
        return h.digest()
    step = _crc32c() if algorithm == "crc32c" else zlib.crc32
    if step is None:
        return None
    crc = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            crc = step(chunk, crc)
    return crc.to_bytes(4, "big")


@dataclass
class BucketStore:
    """The bucket's answer per file under ``mount`` (the folder where the bucket, or its prefix, is mounted).

    ``verify_bytes``: files up to this size are checksummed before they count as in the cloud (None: all, as the
    daemon does, once per file version); a larger one is judged by its size (status: never read 5 GB to answer).
    """

    how: str
    url: BucketURL
    mount: Path
    fallback: WritebackStore
    objects: Callable[[], Objects]
    verify_bytes: int | None = None
    kind: str = "bucket"
    estimated: bool = False
    _confirmed: dict[tuple[str, int, int, int], Evidence] = field(default_factory=dict, repr=False)

    @property
    def presumed_bytes_per_s(self) -> float | None:
        return self.fallback.bytes_per_s

    def look(self, path: Path) -> Evidence:
        st = _stat(path)
        if st is None:
            return Evidence(Where.ABSENT)
        version = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
        if version in self._confirmed:
            return self._confirmed[version]
        try:
            rel = Path(os.path.abspath(path)).relative_to(self.mount).as_posix()
        except ValueError:
            return self.fallback.judge(st.st_mtime, st.st_size, f"outside the bucket's mount {self.mount}; ")
        try:
            remote = self.objects().head(self.url.key(rel))
        except Exception as err:  # noqa: BLE001 - any SDK failure (network, credentials) means: no evidence now
            why = " ".join(f"{type(err).__name__}: {err}".split())[:200]
            return self.fallback.judge(st.st_mtime, st.st_size, f"{self.url} did not answer ({why}); ")
        where = (
            f"{self.url}/{rel}" if not self.url.prefix else f"{self.url.scheme}://{self.url.name}/{self.url.key(rel)}"
        )
        if remote is None:
            return Evidence(Where.UPLOADING, since=st.st_mtime, size=st.st_size, detail=f"not in {where} yet")
        if remote.size != st.st_size:
            return Evidence(Where.UPLOADING, since=st.st_mtime, size=st.st_size,
                            detail=f"{where} holds {remote.size} bytes, the file {st.st_size}")  # fmt: skip
        match = self._compare(path, st.st_size, remote)
        if match is None:
            return Evidence(Where.UPLOADING, since=st.st_mtime, size=st.st_size,
                            detail=f"{where} holds other bytes of the same size (an older upload)")  # fmt: skip
        detail, checked = match
        found = Evidence(Where.CLOUD, size=st.st_size, detail=f"{where}: {detail}")
        if checked:  # final for this version of the file; a size-only answer is asked again
            self._confirmed[version] = found
        return found

    def _compare(self, path: Path, size: int, remote: Remote) -> tuple[str, bool] | None:
        """How the object matches the file, and whether a checksum proved it; None when a checksum differs."""
        if self.verify_bytes is not None and size > self.verify_bytes:
            return "size matches (its checksum is compared by the daemon, not by status)", False
        for algorithm in ALGORITHMS:
            if algorithm in remote.checksums:
                mine = local_digest(path, algorithm)
                if mine is None:
                    continue
                return (f"size and {algorithm} match", True) if mine == remote.checksums[algorithm] else None
        return "size matches (the store offers no checksum of this object)", False
