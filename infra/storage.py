"""S3 buckets, DynamoDB tables and ECR repositories.

Buckets: ``tradai-{configs,results,arcticdb,logs,mlflow}-{env}``, encrypted, private, TLS only,
versioned except logs. Results move to Glacier after 30 days; logs are deleted after 90.
Table: bot trading state (the bots' heartbeats and state), keyed by ``strategy_id``, with point-in-time
recovery, KMS encryption and TTL on ``expires_at``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.config import Settings, Tagger
from resources import aws_contract

# Old object versions are kept long enough to undo a mistake, not forever.
NONCURRENT_VERSION_DAYS = {"configs": 90, "results": 30, "arcticdb": 7, "mlflow": 30}
ECR_KEEP_IMAGES = 30
ECR_UNTAGGED_DAYS = 7


@dataclass
class Storage:
    buckets: dict[str, aws.s3.Bucket]
    trading_state: aws.dynamodb.Table
    repositories: dict[str, aws.ecr.Repository]


def create_storage(settings: Settings, tags: Tagger) -> Storage:
    buckets = {kind: _bucket(settings, tags, kind) for kind in aws_contract.BUCKET_KINDS}
    trading_state = _table(settings, tags, "trading-state", aws_contract.trading_state_table(settings.env))
    repositories = {image: _repository(settings, tags, image) for image in aws_contract.IMAGE_REPOSITORIES}
    return Storage(buckets=buckets, trading_state=trading_state, repositories=repositories)


def _bucket(settings: Settings, tags: Tagger, kind: str) -> aws.s3.Bucket:
    name = aws_contract.bucket_name(kind, settings.env)
    bucket = aws.s3.Bucket(
        f"{kind}-bucket",
        bucket=name,
        force_destroy=not settings.prod,
        tags=tags("storage", Name=name),
    )
    aws.s3.BucketOwnershipControls(
        f"{kind}-bucket-ownership",
        bucket=bucket.id,
        rule={"object_ownership": "BucketOwnerEnforced"},
    )
    access_block = aws.s3.BucketPublicAccessBlock(
        f"{kind}-bucket-public-access",
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
    )
    aws.s3.BucketServerSideEncryptionConfiguration(
        f"{kind}-bucket-encryption",
        bucket=bucket.id,
        rules=[
            {
                "apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"},
                "bucket_key_enabled": True,
            }
        ],
    )
    versioned = kind not in aws_contract.UNVERSIONED_BUCKETS
    if versioned:
        versioning = aws.s3.BucketVersioning(
            f"{kind}-bucket-versioning",
            bucket=bucket.id,
            versioning_configuration={"status": "Enabled"},
        )
    aws.s3.BucketPolicy(
        f"{kind}-bucket-tls-only",
        bucket=bucket.id,
        policy=bucket.arn.apply(
            lambda arn: json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "DenyInsecureTransport",
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": "s3:*",
                            "Resource": [arn, f"{arn}/*"],
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                        }
                    ],
                }
            )
        ),
        opts=pulumi.ResourceOptions(depends_on=[access_block]),
    )

    rules: list[dict] = [
        {
            "id": "abort-incomplete-uploads",
            "status": "Enabled",
            "filter": {},
            "abort_incomplete_multipart_upload": {"days_after_initiation": 7},
        }
    ]
    if kind == "results":
        rules.append(
            {
                "id": "results-to-glacier",
                "status": "Enabled",
                "filter": {},
                "transitions": [
                    {
                        "days": aws_contract.RESULTS_TO_GLACIER_AFTER_DAYS,
                        "storage_class": "GLACIER",
                    }
                ],
            }
        )
    if kind == "logs":
        rules.append(
            {
                "id": "expire-logs",
                "status": "Enabled",
                "filter": {},
                "expiration": {"days": aws_contract.LOGS_EXPIRE_AFTER_DAYS},
            }
        )
    if versioned:
        rules.append(
            {
                "id": "expire-old-versions",
                "status": "Enabled",
                "filter": {},
                "noncurrent_version_expiration": {"noncurrent_days": NONCURRENT_VERSION_DAYS[kind]},
                "expiration": {"expired_object_delete_marker": True},
            }
        )
    aws.s3.BucketLifecycleConfiguration(
        f"{kind}-bucket-lifecycle",
        bucket=bucket.id,
        rules=rules,
        opts=pulumi.ResourceOptions(depends_on=[versioning] if versioned else []),
    )
    return bucket


def _table(settings: Settings, tags: Tagger, logical: str, name: str) -> aws.dynamodb.Table:
    return aws.dynamodb.Table(
        f"{logical}-table",
        name=name,
        billing_mode="PAY_PER_REQUEST",
        hash_key=aws_contract.TABLE_PARTITION_KEY,
        attributes=[{"name": aws_contract.TABLE_PARTITION_KEY, "type": "S"}],
        point_in_time_recovery={"enabled": True},
        server_side_encryption={"enabled": True},  # AWS-managed KMS key (aws/dynamodb)
        ttl={"attribute_name": aws_contract.TABLE_TTL_ATTRIBUTE, "enabled": True},
        deletion_protection_enabled=settings.deletion_protection,
        tags=tags("bots", Name=name),
    )


def _repository(settings: Settings, tags: Tagger, image: str) -> aws.ecr.Repository:
    name = aws_contract.repository_name(image, settings.env)
    repository = aws.ecr.Repository(
        f"{image}-repository",
        name=name,
        image_tag_mutability="IMMUTABLE",  # a tag is a git commit; it never moves
        image_scanning_configuration={"scan_on_push": True},
        encryption_configurations=[{"encryption_type": "AES256"}],
        force_delete=not settings.prod,
        tags=tags("images", Name=name),
    )
    aws.ecr.LifecyclePolicy(
        f"{image}-repository-lifecycle",
        repository=repository.name,
        policy=json.dumps(
            {
                "rules": [
                    {
                        "rulePriority": 1,
                        "description": f"Drop untagged images after {ECR_UNTAGGED_DAYS} days",
                        "selection": {
                            "tagStatus": "untagged",
                            "countType": "sinceImagePushed",
                            "countUnit": "days",
                            "countNumber": ECR_UNTAGGED_DAYS,
                        },
                        "action": {"type": "expire"},
                    },
                    {
                        "rulePriority": 2,
                        "description": f"Keep the {ECR_KEEP_IMAGES} newest tagged images",
                        "selection": {
                            "tagStatus": "any",
                            "countType": "imageCountMoreThan",
                            "countNumber": ECR_KEEP_IMAGES,
                        },
                        "action": {"type": "expire"},
                    },
                ]
            }
        ),
    )
    return repository
