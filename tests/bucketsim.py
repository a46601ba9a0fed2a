"""A bucket for tests: the two HTTP calls f5guard's bucket evidence makes, answered from a folder, on 127.0.0.1.

The real SDKs talk to it (google-cloud-storage through ``STORAGE_EMULATOR_HOST``, boto3 through an endpoint URL
or ``AWS_ENDPOINT_URL_S3``), so only the network is stood in for: GCS's JSON API ``GET /storage/v1/b/B/o/KEY``
(size, crc32c, md5Hash as GCS computes them; no md5 for a composed object) and S3's ``HEAD /B/KEY`` (Content-Length;
an ETag that is the md5 of a single-part upload or ``<md5 of the parts' md5s>-N`` of a multipart one, with rclone's
``x-amz-meta-md5chksum`` when ``rclone_md5``; ``x-amz-checksum-crc32`` of the whole object on request).

Each bucket is a folder: the drivesim cloud (tests/drivesim.py), where a file appears only once its upload
landed, as an object does. Stdlib only.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import threading
import urllib.parse
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import google_crc32c  # google-cloud-storage's own dependency, as on a VM with the SDK


@dataclass
class Bucket:
    root: Path
    multipart_bytes: int = 0  # S3: objects larger than this were uploaded in parts (0: never)
    rclone_md5: bool = True  # S3 multipart: rclone recorded the whole file's md5 in the metadata
    composed: bool = False  # GCS: objects were composed (no md5Hash, crc32c only)
    full_crc32: bool = False  # S3: a full-object CRC32 checksum (x-amz-checksum-crc32)


@dataclass
class BucketSim:
    """``with BucketSim({"b": Bucket(folder)}) as sim: sim.url`` is the endpoint; ``sim.calls`` counts requests."""

    buckets: dict[str, Bucket]
    calls: list[str] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def env(self) -> dict[str, str]:
        """What a process needs to reach this bucket with the real SDKs (dummy credentials: nothing checks them)."""
        return {"STORAGE_EMULATOR_HOST": self.url, "AWS_ENDPOINT_URL_S3": self.url, "AWS_ACCESS_KEY_ID": "test",
                "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip

    def __enter__(self) -> BucketSim:
        sim = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                sim.calls.append(f"GET {self.path}")
                sim._gcs(self)

            def do_HEAD(self) -> None:
                sim.calls.append(f"HEAD {self.path}")
                sim._s3(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, name="bucketsim", daemon=True).start()
        return self

    def __exit__(self, *_exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def _object(self, bucket: str, key: str) -> tuple[Bucket, bytes, float] | None:
        found = self.buckets.get(bucket)
        if found is None:
            return None
        path = found.root / key
        try:
            return found, path.read_bytes(), path.stat().st_mtime
        except OSError:
            return None

    def _gcs(self, req: BaseHTTPRequestHandler) -> None:
        parts = urllib.parse.urlsplit(req.path).path.split("/")
        if parts[1:4] != ["storage", "v1", "b"] or len(parts) < 7 or parts[5] != "o":
            req.send_error(400)
            return
        bucket, key = parts[4], urllib.parse.unquote("/".join(parts[6:]))
        got = self._object(bucket, key)
        if got is None:
            body = json.dumps({"error": {"code": 404, "message": "No such object"}}).encode()
            req.send_response(404)
        else:
            meta, data, mtime = got
            doc = {"kind": "storage#object", "name": key, "bucket": bucket, "size": str(len(data)), "generation": "1",
                   "crc32c": base64.b64encode(google_crc32c.value(data).to_bytes(4, "big")).decode(),
                   "updated": email.utils.formatdate(mtime, usegmt=True)}  # fmt: skip
            if not meta.composed:
                doc["md5Hash"] = base64.b64encode(hashlib.md5(data).digest()).decode()  # noqa: S324 - GCS's
            body = json.dumps(doc).encode()
            req.send_response(200)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)

    def _s3(self, req: BaseHTTPRequestHandler) -> None:
        bucket, _, key = urllib.parse.unquote(urllib.parse.urlsplit(req.path).path).lstrip("/").partition("/")
        got = self._object(bucket, key)
        if got is None:
            req.send_response(404)
            req.send_header("Content-Length", "0")
            req.end_headers()
            return
        meta, data, mtime = got
        req.send_response(200)
        req.send_header("Content-Length", str(len(data)))
        req.send_header("Last-Modified", email.utils.formatdate(mtime, usegmt=True))
        md5 = hashlib.md5(data).digest()  # noqa: S324 - S3's ETag
        if meta.multipart_bytes and len(data) > meta.multipart_bytes:
            chunks = [data[i : i + meta.multipart_bytes] for i in range(0, len(data), meta.multipart_bytes)]
            joined = b"".join(hashlib.md5(c).digest() for c in chunks)  # noqa: S324
            req.send_header("ETag", f'"{hashlib.md5(joined).hexdigest()}-{len(chunks)}"')  # noqa: S324
            if meta.rclone_md5:
                req.send_header("x-amz-meta-md5chksum", base64.b64encode(md5).decode())
        else:
            req.send_header("ETag", f'"{md5.hex()}"')
        if meta.full_crc32 and req.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED":
            req.send_header("x-amz-checksum-crc32", base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode())
            req.send_header("x-amz-checksum-type", "FULL_OBJECT")
        req.end_headers()
