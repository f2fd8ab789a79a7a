"""The cache key: which AWS service, which item, and every selector that changes the answer."""

from __future__ import annotations

from sidecar.core.record import Record

SSM = "ssm"
SECRETS = "secretsmanager"
SSM_PATH = "ssm-path"  # a GetParametersByPath answer, cached whole (SSM's TTL and limits)
S3 = "s3"  # an object's bytes; ``options`` holds the bucket and the object key


class Key(Record):
    """One cacheable answer. Built once per distinct request; also tells upstream which call to
    make. A tuple, so that hashing and comparing it on every hit run in C.

    For SSM, ``version`` and ``label`` are exclusive (the query parser keeps whichever came first).
    """

    service: str
    name: str
    version: str | None = None
    label: str | None = None
    with_decryption: bool = False
    version_id: str | None = None
    version_stage: str | None = None
    # For SSM_PATH: the read's other arguments, canonical (``recursive``, filters).
    options: tuple[tuple[str, str], ...] = ()
    # ``roleArn``: read with that role's credentials (STS AssumeRole). Part of the key, so a value
    # read under one role is never served to a request for another (or for no role).
    role: str | None = None

    def limits(self) -> str:
        """The service whose TTL, timeout and connection slots apply."""
        return SSM if self.service == SSM_PATH else self.service

    def ssm_name(self) -> str:
        """The GetParameter ``Name``: the name with its ``:version`` or ``:label`` selector."""
        selector = self.version or self.label
        return f"{self.name}:{selector}" if selector else self.name

    def describe(self) -> str:
        """A short log-safe label (names and selectors only, never values)."""
        label = self._label()
        return f"{label} as {self.role}" if self.role else label

    def _label(self) -> str:
        if self.service == SSM:
            return self.ssm_name() + (" (decrypted)" if self.with_decryption else "")
        if self.service == SSM_PATH:
            return f"path {self.name}" + "".join(f" {k}={v}" for k, v in self.options)
        if self.service == S3:
            return self.name + (f"?versionId={self.version_id}" if self.version_id else "")
        selector = self.version_id or self.version_stage
        return f"{self.name}@{selector}" if selector else self.name
