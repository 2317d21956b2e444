"""VPC in two (or more) availability zones: public, private and database subnets, and NAT.

Public subnets hold the ALB and the NAT; private subnets hold every ECS task; database subnets hold
RDS and have no route out of the VPC. NAT is either one instance (t4g.nano in an Auto Scaling group,
for dev and staging) or one managed NAT gateway per zone (prod). S3 and DynamoDB are reached through
free gateway endpoints, so image layers and ArcticDB traffic do not pass through NAT.
"""

from __future__ import annotations

import base64
import ipaddress
import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.config import Settings, Tagger

NAT_INSTANCE_TYPE = "t4g.nano"
NAT_AMI = "resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"
NAT_PORTS = (80, 443)


@dataclass
class Network:
    vpc: aws.ec2.Vpc
    public_subnets: list[aws.ec2.Subnet]
    private_subnets: list[aws.ec2.Subnet]
    database_subnets: list[aws.ec2.Subnet]


def create_network(settings: Settings, tags: Tagger) -> Network:
    env = settings.env
    vpc = aws.ec2.Vpc(
        "vpc",
        cidr_block=settings.vpc_cidr,
        enable_dns_support=True,
        enable_dns_hostnames=True,  # Cloud Map names and the RDS endpoint resolve inside the VPC
        tags=tags("network", Name=f"tradai-{env}"),
    )
    internet_gateway = aws.ec2.InternetGateway(
        "internet-gateway", vpc_id=vpc.id, tags=tags("network", Name=f"tradai-{env}")
    )

    def subnets(tier: str, cidrs: tuple[str, ...]) -> list[aws.ec2.Subnet]:
        return [
            aws.ec2.Subnet(
                f"{tier}-subnet-{zone}",
                vpc_id=vpc.id,
                cidr_block=cidr,
                availability_zone=zone,
                map_public_ip_on_launch=False,
                tags=tags("network", Name=f"tradai-{env}-{tier}-{zone}", Tier=tier),
            )
            for zone, cidr in zip(settings.availability_zones, cidrs, strict=True)
        ]

    public = subnets("public", settings.public_subnet_cidrs)
    private = subnets("private", settings.private_subnet_cidrs)
    database = subnets("database", settings.database_subnet_cidrs)

    public_routes = aws.ec2.RouteTable(
        "public-routes", vpc_id=vpc.id, tags=tags("network", Name=f"tradai-{env}-public")
    )
    aws.ec2.Route(
        "public-default-route",
        route_table_id=public_routes.id,
        destination_cidr_block="0.0.0.0/0",
        gateway_id=internet_gateway.id,
    )
    for subnet, zone in zip(public, settings.availability_zones, strict=True):
        aws.ec2.RouteTableAssociation(
            f"public-routes-{zone}", subnet_id=subnet.id, route_table_id=public_routes.id
        )

    private_routes = [
        aws.ec2.RouteTable(
            f"private-routes-{zone}",
            vpc_id=vpc.id,
            tags=tags("network", Name=f"tradai-{env}-private-{zone}"),
        )
        for zone in settings.availability_zones
    ]
    for subnet, table, zone in zip(private, private_routes, settings.availability_zones, strict=True):
        aws.ec2.RouteTableAssociation(f"private-routes-{zone}", subnet_id=subnet.id, route_table_id=table.id)

    database_routes = aws.ec2.RouteTable(
        "database-routes", vpc_id=vpc.id, tags=tags("network", Name=f"tradai-{env}-database")
    )
    for subnet, zone in zip(database, settings.availability_zones, strict=True):
        aws.ec2.RouteTableAssociation(
            f"database-routes-{zone}", subnet_id=subnet.id, route_table_id=database_routes.id
        )

    if settings.nat_mode == "gateway":
        _nat_gateways(settings, tags, public, private_routes, internet_gateway)
    else:
        _nat_instance(settings, tags, vpc, public[0], private_routes)

    for service in ("s3", "dynamodb"):
        aws.ec2.VpcEndpoint(
            f"{service}-endpoint",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{settings.region}.{service}",
            vpc_endpoint_type="Gateway",
            route_table_ids=[table.id for table in private_routes],
            tags=tags("network", Name=f"tradai-{env}-{service}"),
        )

    return Network(vpc=vpc, public_subnets=public, private_subnets=private, database_subnets=database)


def _nat_gateways(
    settings: Settings,
    tags: Tagger,
    public: list[aws.ec2.Subnet],
    private_routes: list[aws.ec2.RouteTable],
    internet_gateway: aws.ec2.InternetGateway,
) -> None:
    """One NAT gateway per zone, each with a fixed public address (exchange API key allow-lists)."""
    for subnet, table, zone in zip(public, private_routes, settings.availability_zones, strict=True):
        address = aws.ec2.Eip(
            f"nat-address-{zone}",
            domain="vpc",
            tags=tags("network", Name=f"tradai-{settings.env}-nat-{zone}"),
            opts=pulumi.ResourceOptions(depends_on=[internet_gateway]),
        )
        gateway = aws.ec2.NatGateway(
            f"nat-gateway-{zone}",
            subnet_id=subnet.id,
            allocation_id=address.id,
            connectivity_type="public",
            tags=tags("network", Name=f"tradai-{settings.env}-nat-{zone}"),
        )
        aws.ec2.Route(
            f"private-default-route-{zone}",
            route_table_id=table.id,
            destination_cidr_block="0.0.0.0/0",
            nat_gateway_id=gateway.id,
        )


# Runs at every boot of the NAT instance (a systemd unit), so a replacement instance started by the
# Auto Scaling group takes over the same network interface, and with it every private route.
_NAT_SCRIPT = r"""#!/bin/bash
set -euo pipefail
token=$(curl -sf -X PUT http://169.254.169.254/latest/api/token -H "X-aws-ec2-metadata-token-ttl-seconds: 60")
imds() { curl -sf -H "X-aws-ec2-metadata-token: $token" "http://169.254.169.254/latest/meta-data/$1"; }
interface_with_mac() { ip -o link | awk -v mac="$1" 'index($0, mac) {sub(":$", "", $2); print $2}'; }
if [ -z "$(interface_with_mac "$ENI_MAC")" ]; then
  aws ec2 attach-network-interface --region "$(imds placement/region)" \
    --instance-id "$(imds instance-id)" --device-index 1 --network-interface-id "$ENI_ID"
fi
until nat_if=$(interface_with_mac "$ENI_MAC") && [ -n "$nat_if" ]; do sleep 1; done
primary_if=$(interface_with_mac "$(imds mac)")
ip link set "$nat_if" up
sysctl -qw net.ipv4.ip_forward=1
sysctl -qw "net.ipv4.conf.$nat_if.send_redirects=0"
# Private traffic enters and leaves through the static interface; the internet through the primary.
ip route replace "$VPC_CIDR" via "$SUBNET_GATEWAY" dev "$nat_if"
iptables -t nat -C POSTROUTING -o "$primary_if" -j MASQUERADE 2>/dev/null \
  || iptables -t nat -A POSTROUTING -o "$primary_if" -j MASQUERADE
"""

_NAT_UNIT = """[Unit]
Description=NAT for the private subnets through the static network interface
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
RemainAfterExit=yes
EnvironmentFile=/etc/tradai-nat.env
ExecStart=/usr/local/sbin/tradai-nat

[Install]
WantedBy=multi-user.target
"""


def nat_user_data(eni_id: str, eni_mac: str, vpc_cidr: str, subnet_cidr: str) -> str:
    """Cloud-init user data (base64) that installs and starts the NAT unit."""
    gateway = ipaddress.ip_network(subnet_cidr).network_address + 1  # the subnet's VPC router
    script = "\n".join(
        [
            "#!/bin/bash",
            "set -euo pipefail",
            "dnf install -y iptables-nft",
            "cat > /etc/tradai-nat.env <<'ENV'",
            f"ENI_ID={eni_id}",
            f"ENI_MAC={eni_mac.lower()}",
            f"VPC_CIDR={vpc_cidr}",
            f"SUBNET_GATEWAY={gateway}",
            "ENV",
            "cat > /usr/local/sbin/tradai-nat <<'SCRIPT'",
            _NAT_SCRIPT.rstrip("\n"),
            "SCRIPT",
            "chmod 0755 /usr/local/sbin/tradai-nat",
            "cat > /etc/systemd/system/tradai-nat.service <<'UNIT'",
            _NAT_UNIT.rstrip("\n"),
            "UNIT",
            "systemctl daemon-reload",
            "systemctl enable --now tradai-nat.service",
            "",
        ]
    )
    return base64.b64encode(script.encode()).decode()


def _nat_instance(
    settings: Settings,
    tags: Tagger,
    vpc: aws.ec2.Vpc,
    subnet: aws.ec2.Subnet,
    private_routes: list[aws.ec2.RouteTable],
) -> None:
    """A t4g.nano NAT in an Auto Scaling group of one, behind a static network interface.

    The private route tables point at the static interface; whichever instance the group runs
    attaches it at boot. Egress leaves through the instance's own public address, which changes
    when the instance is replaced (use natMode: gateway where exchanges allow-list addresses).
    """
    env = settings.env
    security_group = aws.ec2.SecurityGroup(
        "nat-security-group",
        vpc_id=vpc.id,
        name=f"tradai-{env}-nat",
        description="NAT instance: HTTP(S) from the private subnets out to the internet",
        tags=tags("network", Name=f"tradai-{env}-nat"),
    )
    for port in NAT_PORTS:
        for zone, cidr in zip(settings.availability_zones, settings.private_subnet_cidrs, strict=True):
            aws.vpc.SecurityGroupIngressRule(
                f"nat-in-{port}-{zone}",
                security_group_id=security_group.id,
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                cidr_ipv4=cidr,
                description=f"port {port} from the private subnet in {zone}",
                tags=tags("network"),
            )
        aws.vpc.SecurityGroupEgressRule(
            f"nat-out-{port}",
            security_group_id=security_group.id,
            ip_protocol="tcp",
            from_port=port,
            to_port=port,
            cidr_ipv4="0.0.0.0/0",
            description=f"port {port} to the internet",
            tags=tags("network"),
        )

    interface = aws.ec2.NetworkInterface(
        "nat-interface",
        subnet_id=subnet.id,
        security_groups=[security_group.id],
        source_dest_check=False,  # it forwards packets that are not addressed to it
        description="Route target of the private subnets; attached by the NAT instance",
        tags=tags("network", Name=f"tradai-{env}-nat"),
    )
    for table, zone in zip(private_routes, settings.availability_zones, strict=True):
        aws.ec2.Route(
            f"private-default-route-{zone}",
            route_table_id=table.id,
            destination_cidr_block="0.0.0.0/0",
            network_interface_id=interface.id,
        )

    account_id = aws.get_caller_identity_output().account_id
    role = aws.iam.Role(
        "nat-role",
        name=f"tradai-{env}-nat",
        assume_role_policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "ec2.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
        tags=tags("network"),
    )
    aws.iam.RolePolicy(
        "nat-attach-interface",
        role=role.id,
        policy=pulumi.Output.all(interface.arn, account_id).apply(
            lambda args: json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "AttachTheStaticInterface",
                            "Effect": "Allow",
                            "Action": ["ec2:AttachNetworkInterface"],
                            "Resource": [args[0]],
                        },
                        {
                            "Sid": "ToANatInstanceOfThisStack",
                            "Effect": "Allow",
                            "Action": ["ec2:AttachNetworkInterface"],
                            "Resource": [f"arn:aws:ec2:{settings.region}:{args[1]}:instance/*"],
                            "Condition": {
                                "StringEquals": {
                                    "aws:ResourceTag/Service": "network",
                                    "aws:ResourceTag/Environment": env,
                                }
                            },
                        },
                    ],
                }
            )
        ),
    )
    profile = aws.iam.InstanceProfile(
        "nat-profile", name=f"tradai-{env}-nat", role=role.name, tags=tags("network")
    )
    template = aws.ec2.LaunchTemplate(
        "nat-launch-template",
        name=f"tradai-{env}-nat",
        image_id=NAT_AMI,
        instance_type=NAT_INSTANCE_TYPE,
        iam_instance_profile={"arn": profile.arn},
        network_interfaces=[
            {
                "device_index": 0,
                "subnet_id": subnet.id,
                "security_groups": [security_group.id],
                "associate_public_ip_address": "true",
                "delete_on_termination": "true",
            }
        ],
        metadata_options={"http_tokens": "required", "http_endpoint": "enabled"},
        block_device_mappings=[
            {
                "device_name": "/dev/xvda",
                "ebs": {"volume_size": 8, "volume_type": "gp3", "encrypted": "true"},
            }
        ],
        user_data=pulumi.Output.all(interface.id, interface.mac_address, subnet.cidr_block).apply(
            lambda args: nat_user_data(args[0], args[1], settings.vpc_cidr, args[2])
        ),
        tag_specifications=[
            {"resource_type": kind, "tags": tags("network", Name=f"tradai-{env}-nat")}
            for kind in ("instance", "volume", "network-interface")
        ],
        tags=tags("network"),
    )
    aws.autoscaling.Group(
        "nat-group",
        name=f"tradai-{env}-nat",
        min_size=1,
        max_size=1,
        desired_capacity=1,
        vpc_zone_identifiers=[subnet.id],  # the static interface's zone
        health_check_type="EC2",
        launch_template={"id": template.id, "version": template.latest_version.apply(str)},
        instance_refresh={"strategy": "Rolling", "preferences": {"min_healthy_percentage": 0}},
        tags=tags.autoscaling("network", Name=f"tradai-{env}-nat"),
    )
