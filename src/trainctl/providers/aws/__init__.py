"""The aws provider: EC2 machines, training over SSM, results through S3.

Importing this package does not import boto3."""

from .instance import AwsProvider

__all__ = ["AwsProvider"]
