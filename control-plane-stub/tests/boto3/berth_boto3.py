"""What the boto3 scripts share: a client for berth-cp at the endpoint given as the script's
one argument (any credentials: berth-cp does not verify them yet), and the error code a call
raises."""

import sys

import boto3
from botocore.exceptions import ClientError


def ecs_client():
    return boto3.client(
        "ecs",
        endpoint_url=sys.argv[1],
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )


def error_code(call, **kwargs):
    """The botocore error code `call(**kwargs)` fails with; an AssertionError if it succeeds."""
    try:
        call(**kwargs)
    except ClientError as e:
        return e.response["Error"]["Code"]
    raise AssertionError(f"{call.__name__} {kwargs} succeeded")
