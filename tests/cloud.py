"""Local stand-ins for cloud storage, started and stopped by the tests (no network).

- GCS: gcp-storage-emulator in a thread; gcsfs finds it through STORAGE_EMULATOR_HOST.
- S3: moto's server mode in a thread; s3fs gets the endpoint through fsspec's config.

fsspec reads ``FSSPEC_<PROTOCOL>_<KWARG>`` variables once at import, so the tests set the
same values in ``fsspec.config.conf`` directly (in-process runner).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

import fsspec
import fsspec.config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _patched(env: dict[str, str], conf: dict[str, dict]) -> Iterator[None]:
    old_env = {k: os.environ.get(k) for k in env}
    old_conf = {k: fsspec.config.conf.get(k) for k in conf}
    os.environ.update(env)
    fsspec.config.conf.update(conf)
    fsspec.AbstractFileSystem.clear_instance_cache()
    try:
        yield
    finally:
        for key, value in old_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        for key, value in old_conf.items():
            if value is None:
                fsspec.config.conf.pop(key, None)
            else:
                fsspec.config.conf[key] = value
        fsspec.AbstractFileSystem.clear_instance_cache()


@contextlib.contextmanager
def gcs_emulator(bucket: str) -> Iterator[str]:
    """A local GCS with ``bucket``; yields the emulator URL."""
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket)
    server.start()
    host = f"http://127.0.0.1:{port}"
    env = {"STORAGE_EMULATOR_HOST": host, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false", "NO_GCE_CHECK": "true"}
    try:
        with _patched(
            env,
            {
                "gcs": {"token": "anon", "project": "storybeam-test"},
                "gs": {"token": "anon", "project": "storybeam-test"},
            },
        ):
            yield host
    finally:
        server.stop()


@contextlib.contextmanager
def s3_server(bucket: str) -> Iterator[str]:
    """moto's S3 server with ``bucket``; yields the endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    conf = {"s3": {"endpoint_url": endpoint, "key": "testing", "secret": "testing"}}
    try:
        with _patched(env, conf):
            fsspec.filesystem("s3").mkdir(bucket)
            yield endpoint
    finally:
        server.stop()
