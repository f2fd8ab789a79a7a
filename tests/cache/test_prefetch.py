"""The prefetch list syntax and how keys are grouped into batch calls."""

from __future__ import annotations

import pytest

from sidecar.aws.upstream import batches
from sidecar.config.prefetch import PrefetchSyntaxError, parse_prefetch
from sidecar.core.key import SECRETS, SSM, Key


def test_items_become_the_keys_reads_build() -> None:
    keys, tags = parse_prefetch(
        " ssm:/a , ssm:/b?withDecryption=true,ssm:/c?label=prod&withDecryption=TRUE,"
        "ssm:arn:aws:ssm:us-east-1:1:parameter/d?version=3,secret:prod/db,"
        "secret:prod/api?versionStage=AWSPREVIOUS,,secret:x%2By")
    assert keys == (
        Key(SSM, "/a"), Key(SSM, "/b", with_decryption=True),
        Key(SSM, "/c", label="prod", with_decryption=True),
        Key(SSM, "arn:aws:ssm:us-east-1:1:parameter/d", version="3"),
        Key(SECRETS, "prod/db"), Key(SECRETS, "prod/api", version_stage="AWSPREVIOUS"),
        Key(SECRETS, "x+y"),
    )
    assert tags == ()


def test_tag_items_and_roles() -> None:
    role = "arn:aws:iam::111122223333:role/reader"
    keys, tags = parse_prefetch(f"secret-tag:Team,secret:a?roleArn={role},"
                                f"secret-tag:Env?roleArn={role},secret-tag:Team")
    assert keys == (Key(SECRETS, "a", role=role),)
    assert tags == (("Team", None), ("Env", role))
    with pytest.raises(PrefetchSyntaxError, match="roleArn"):
        parse_prefetch("secret-tag:Team?roleArn=arn:aws:iam::1:role/x")
    with pytest.raises(PrefetchSyntaxError, match="only roleArn"):
        parse_prefetch("secret-tag:Team?versionStage=AWSCURRENT")


def test_duplicates_are_fetched_once() -> None:
    assert parse_prefetch("ssm:/a,ssm:/a,ssm:/a?withDecryption=false") == ((Key(SSM, "/a"),), ())


@pytest.mark.parametrize(("raw", "fragment"), [
    ("s3:/a", "'bucket' is empty"),
    ("s3:Bad_Bucket/k", "not a valid S3 bucket name"),
    ("sns:/a", "must start with 'ssm:', 'secret:', 'path:', 's3:' or 'secret-tag:'"),
    ("/a", "must start with 'ssm:', 'secret:', 'path:', 's3:' or 'secret-tag:'"),
    ("path:relative", "must start with '/'"),
    ("ssm:", "has no name"),
    ("ssm:/a?version=x", "'version' must be a positive integer"),
    ("ssm:/a?colour=red", "unknown query parameter 'colour'"),
    ("secret:a?refreshNow=true", "only selectors have a meaning here"),
    ("ssm:/a?transform=json", "only selectors have a meaning here"),
    ("ssm:/a?name=/b", "repeated"),
])
def test_bad_items_are_explained(raw: str, fragment: str) -> None:
    with pytest.raises(PrefetchSyntaxError, match="item 1") as raised:
        parse_prefetch(raw)
    assert fragment in str(raised.value)


def test_too_many_items() -> None:
    with pytest.raises(PrefetchSyntaxError, match="at most 1000"):
        parse_prefetch(",".join(f"ssm:/p{index}" for index in range(1001)))


def test_batches_respect_size_and_keep_names_apart() -> None:
    keys = [Key(SSM, f"/p{index}") for index in range(25)]
    groups = batches(keys, 10)
    assert [len(group) for group in groups] == [10, 10, 5]
    same_name = [Key(SSM, "/x"), Key(SSM, "/x", version="1"), Key(SSM, "/x", label="l"),
                 Key(SSM, "/y")]
    grouped = batches(same_name, 10)
    assert len(grouped) == 3
    for group in grouped:
        assert len({key.name for key in group}) == len(group)
    assert {k for g in grouped for k in g} == set(same_name)
