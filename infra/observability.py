"""CloudWatch log groups, the alerts topic, alarms and the monthly budget."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.config import Settings, Tagger

# One log group per ECS service, one for run tasks, one for bots.
LOG_GROUPS = ("webserver", "daemon", "code-location", "mlflow", "api", "dagster-runs", "bots")


@dataclass
class LogGroups:
    groups: dict[str, aws.cloudwatch.LogGroup]

    def __getitem__(self, name: str) -> aws.cloudwatch.LogGroup:
        return self.groups[name]

    @property
    def arns(self) -> list[pulumi.Output[str]]:
        return [group.arn for group in self.groups.values()]


def create_log_groups(settings: Settings, tags: Tagger) -> LogGroups:
    groups = {
        name: aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=f"/tradai/{settings.env}/{name}",
            retention_in_days=settings.log_retention_days,
            tags=tags("observability", Component=name),
        )
        for name in LOG_GROUPS
    }
    return LogGroups(groups=groups)


def create_alerts_topic(settings: Settings, tags: Tagger) -> aws.sns.Topic:
    topic = aws.sns.Topic(
        "alerts",
        name=f"tradai-{settings.env}-alerts",
        # Not encrypted with the AWS-managed SNS key: Budgets and CloudWatch cannot use that key.
        tags=tags("observability"),
    )
    aws.sns.TopicSubscription(
        "alerts-email", topic=topic.arn, protocol="email", endpoint=settings.alert_email
    )
    # AWS Budgets and CloudWatch publish to the topic on the account's behalf.
    aws.sns.TopicPolicy(
        "alerts-publishers",
        arn=topic.arn,
        policy=pulumi.Output.all(topic.arn, aws.get_caller_identity_output().account_id).apply(
            lambda args: json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "BudgetsAndCloudWatchPublish",
                            "Effect": "Allow",
                            "Principal": {"Service": ["budgets.amazonaws.com", "cloudwatch.amazonaws.com"]},
                            "Action": ["sns:Publish"],
                            "Resource": [args[0]],
                            "Condition": {"StringEquals": {"aws:SourceAccount": args[1]}},
                        }
                    ],
                }
            )
        ),
    )
    return topic


def create_budget(settings: Settings, tags: Tagger, topic: aws.sns.Topic) -> aws.budgets.Budget:
    """Monthly cost budget; one notification per threshold (e.g. 80 and 100 USD) by email and SNS."""
    return aws.budgets.Budget(
        "monthly-budget",
        name=f"tradai-{settings.env}-monthly",
        budget_type="COST",
        limit_amount=f"{settings.budget_limit_usd:.2f}",
        limit_unit="USD",
        time_unit="MONTHLY",
        cost_filters=[{"name": "TagKeyValue", "values": [f"user:Environment${settings.env}"]}],
        notifications=[
            {
                "comparison_operator": "GREATER_THAN",
                "notification_type": "ACTUAL",
                "threshold": float(threshold),
                "threshold_type": "ABSOLUTE_VALUE",
                "subscriber_email_addresses": [settings.alert_email],
                "subscriber_sns_topic_arns": [topic.arn],
            }
            for threshold in settings.budget_thresholds_usd
        ],
        tags=tags("observability"),
    )


def create_alarms(
    settings: Settings,
    tags: Tagger,
    topic: aws.sns.Topic,
    database: aws.rds.Instance,
    load_balancer: aws.lb.LoadBalancer,
    webserver_targets: aws.lb.TargetGroup,
) -> None:
    def alarm(name: str, description: str, **kwargs) -> None:
        aws.cloudwatch.MetricAlarm(
            f"{name}-alarm",
            name=f"tradai-{settings.env}-{name}",
            alarm_description=description,
            alarm_actions=[topic.arn],
            ok_actions=[topic.arn],
            treat_missing_data="notBreaching",
            tags=tags("observability"),
            **kwargs,
        )

    alarm(
        "database-cpu",
        "RDS CPU above 80% for 15 minutes",
        namespace="AWS/RDS",
        metric_name="CPUUtilization",
        dimensions={"DBInstanceIdentifier": database.identifier},
        statistic="Average",
        period=300,
        evaluation_periods=3,
        threshold=80,
        comparison_operator="GreaterThanThreshold",
    )
    alarm(
        "database-storage",
        "RDS free storage below 2 GiB",
        namespace="AWS/RDS",
        metric_name="FreeStorageSpace",
        dimensions={"DBInstanceIdentifier": database.identifier},
        statistic="Minimum",
        period=300,
        evaluation_periods=1,
        threshold=2 * 1024**3,
        comparison_operator="LessThanThreshold",
    )
    alarm(
        "alb-5xx",
        "More than 10 target 5xx responses in 5 minutes",
        namespace="AWS/ApplicationELB",
        metric_name="HTTPCode_Target_5XX_Count",
        dimensions={"LoadBalancer": load_balancer.arn_suffix},
        statistic="Sum",
        period=300,
        evaluation_periods=1,
        threshold=10,
        comparison_operator="GreaterThanThreshold",
    )
    alarm(
        "webserver-unhealthy",
        "The Dagster webserver has no healthy target",
        namespace="AWS/ApplicationELB",
        metric_name="HealthyHostCount",
        dimensions={
            "LoadBalancer": load_balancer.arn_suffix,
            "TargetGroup": webserver_targets.arn_suffix,
        },
        statistic="Minimum",
        period=60,
        evaluation_periods=5,
        threshold=1,
        comparison_operator="LessThanThreshold",
    )
