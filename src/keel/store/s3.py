"""S3 byte backend: blobs as objects under ``s3://bucket/prefix/``.

    KEEL_ARTIFACT_URL=s3://my-bucket/keel python flow.py run --with ray

So that machines that share no disk share one artifact store. Endpoint, credentials and
region come from the usual AWS settings (``AWS_ENDPOINT_URL`` or ``AWS_ENDPOINT_URL_S3``,
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` or ``AWS_PROFILE``, ``AWS_REGION`` or
``AWS_DEFAULT_REGION``), so MinIO, Ceph or moto work as well as AWS.

Same guarantees as :class:`~keel.store.backend.LocalBackend`: a writer fills a local temp
file, and the object appears under its key only when its content is complete (a PUT, or
the CompleteMultipartUpload of a large blob, is atomic in S3: a reader sees all of it or
nothing); the store above checks every blob read against its content hash. Large blobs go
up and down in parallel parts (boto3's transfer manager).
"""

from __future__ import annotations

import io
import mmap
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from keel.errors import ArtifactNotFound, StoreError
from keel.store.backend import _KEY, _check_key, _unlink_quietly

__all__ = ["S3Backend"]

_MB = 1024 * 1024


def _need_boto3() -> Any:
    try:
        import boto3
    except ImportError:
        raise StoreError("KEEL_ARTIFACT_URL is an s3:// URL but boto3 is not installed: "
                         "pip install 'keel[s3]' (or pip install boto3)") from None
    return boto3


class S3Backend:
    """Blobs as S3 objects ``prefix/KEY``; large ones moved in parallel multipart transfers."""

    def __init__(self, bucket: str, prefix: str = "", *, multipart_threshold: int = 64 * _MB,
                 part_size: int = 16 * _MB, concurrency: int = 10):
        if not bucket:
            raise StoreError("an S3 artifact store needs a bucket: s3://BUCKET/prefix")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.concurrency = concurrency
        # Read once, where the run starts, and carried to Ray workers and pods with the backend:
        # the endpoint and region belong to the store. Credentials do not travel: each machine
        # uses its own (environment, profile or instance role).
        self.endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
        self.region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
        self._client: Any = None
        self._pid = -1

    @classmethod
    def from_url(cls, url: str) -> S3Backend:
        rest = url[len("s3://"):]
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise StoreError(f"artifact store URL {url!r} names no bucket; expected s3://BUCKET/prefix")
        return cls(bucket, prefix)

    def __repr__(self) -> str:
        return f"S3Backend('s3://{self.bucket}/{self.prefix}')"

    # Sent to Ray workers and pods: the settings travel, the client (sockets, threads) does not.
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_client"], state["_pid"] = None, -1
        return state

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def _name(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    @property
    def client(self) -> Any:
        if self._client is None or self._pid != os.getpid():  # boto3 clients do not survive fork
            boto3 = _need_boto3()
            from botocore.config import Config

            endpoint, region = self.endpoint, self.region
            config = Config(max_pool_connections=max(self.concurrency, 10),
                            retries={"max_attempts": 5, "mode": "standard"},
                            s3={"addressing_style": "path" if endpoint else "auto"})
            self._client = boto3.session.Session().client("s3", endpoint_url=endpoint, region_name=region,
                                                          config=config)
            self._pid = os.getpid()
        return self._client

    def _transfer(self) -> Any:
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(multipart_threshold=self.multipart_threshold, multipart_chunksize=self.part_size,
                              max_concurrency=self.concurrency)

    def _error(self, exc: Exception, key: str | None = None) -> StoreError:
        """One clear StoreError for what boto3 raised."""
        where = self.location(key) if key else self.url
        name = type(exc).__name__
        if name == "NoCredentialsError":
            return StoreError(f"no AWS credentials for {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                              f"(or AWS_PROFILE)")
        if name in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError"):
            endpoint = self.client.meta.endpoint_url
            return StoreError(f"cannot reach S3 at {endpoint} for {where}: {exc}. Check AWS_ENDPOINT_URL "
                              f"and the network")
        response = getattr(exc, "response", None) or {}
        code = str(response.get("Error", {}).get("Code", ""))
        if not code:  # boto3's transfer errors (S3UploadFailedError) carry the code in their text
            code = next((c for c in ("NoSuchBucket", "AccessDenied", "InvalidAccessKeyId") if c in str(exc)), "")
        if code in ("NoSuchBucket",):
            return StoreError(f"S3 bucket {self.bucket!r} does not exist (artifact store {self.url}); create it "
                              f"or fix KEEL_ARTIFACT_URL")
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return StoreError(f"S3 refused access to {where} ({code}): check the AWS credentials and the "
                              f"bucket's permissions")
        return StoreError(f"S3 request for {where} failed: {name}: {exc}")

    @staticmethod
    def _missing(exc: Exception) -> bool:
        response = getattr(exc, "response", None) or {}
        code = str(response.get("Error", {}).get("Code", ""))
        return code in ("404", "NoSuchKey", "NotFound")

    # -- writing -----------------------------------------------------------------------------

    def new_temp(self) -> Path:
        try:
            fd, path = tempfile.mkstemp(prefix="keel-s3-")
        except OSError as exc:
            raise StoreError(f"cannot create a temp file in {tempfile.gettempdir()}: {exc}") from exc
        os.close(fd)
        return Path(path)

    def commit(self, temp: Path, key: str) -> bool:
        try:
            name = self._name(key)
            if self.exists(key):
                return False
            # The object becomes visible only when the upload completes (PUT or
            # CompleteMultipartUpload): a crash half-way leaves nothing under the key.
            self.client.upload_file(os.fspath(temp), self.bucket, name, Config=self._transfer())
            return True
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - boto3 raises from several modules
            raise self._error(exc, key) from exc
        finally:
            _unlink_quietly(temp)

    def write(self, key: str, data: bytes) -> bool:
        name = self._name(key)
        if self.exists(key):
            return False
        try:
            self.client.put_object(Bucket=self.bucket, Key=name, Body=bytes(data))
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, key) from exc
        return True

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._name(key))
        except Exception as exc:  # noqa: BLE001
            if not self._missing(exc):
                raise self._error(exc, key) from exc

    # -- reading -----------------------------------------------------------------------------

    def _head(self, key: str) -> dict[str, Any]:
        try:
            head: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=self._name(key))
            return head
        except Exception as exc:  # noqa: BLE001
            if self._missing(exc):
                raise ArtifactNotFound(f"no blob {key} at {self.location(key)}") from None
            raise self._error(exc, key) from exc

    def exists(self, key: str) -> bool:
        try:
            self._head(key)
        except ArtifactNotFound:
            return False
        return True

    def size(self, key: str) -> int:
        return int(self._head(key)["ContentLength"])

    def read(self, key: str) -> Any:
        """The blob's bytes; a large blob is fetched in parallel ranged parts into a temp file
        and returned memory-mapped copy-on-write (no second copy in RAM)."""
        size = self.size(key)
        if size < self.multipart_threshold:
            try:
                body = self.client.get_object(Bucket=self.bucket, Key=self._name(key))["Body"]
                return body.read()
            except Exception as exc:  # noqa: BLE001
                if self._missing(exc):
                    raise ArtifactNotFound(f"no blob {key} at {self.location(key)}") from None
                raise self._error(exc, key) from exc
        temp = self.new_temp()
        try:
            try:
                self.client.download_file(self.bucket, self._name(key), os.fspath(temp), Config=self._transfer())
            except Exception as exc:  # noqa: BLE001
                if self._missing(exc):
                    raise ArtifactNotFound(f"no blob {key} at {self.location(key)}") from None
                raise self._error(exc, key) from exc
            with open(temp, "rb") as fh:
                if os.fstat(fh.fileno()).st_size == 0:
                    return b""
                return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)
        finally:
            _unlink_quietly(temp)  # the mapping stays valid after the name is gone

    def open(self, key: str) -> BinaryIO:
        data = self.read(key)
        return io.BytesIO(data if isinstance(data, bytes) else bytes(data))

    def local_path(self, key: str) -> Path | None:
        return None

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._name(key)}"

    def keys(self) -> Iterator[str]:
        prefix = f"{self.prefix}/" if self.prefix else ""
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                for obj in page.get("Contents", ()):
                    name = obj["Key"][len(prefix):]
                    if _KEY.fullmatch(name):
                        yield name
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc) from exc
