"""LocalStack READY hook: create the DynamoDB tables of infra/template.yaml.

Every `Type: AWS::DynamoDB::Table` resource of the SAM template is created with the same
AttributeDefinitions, KeySchema, secondary indexes, BillingMode and TimeToLiveSpecification, so the
template stays the single definition of the key schema. Idempotent: existing tables are skipped
(only their TTL setting is brought in line).

LocalStack runs ready.d Python files inside its own interpreter (which has boto3 and PyYAML) via
exec(), so this file calls main() at top level and raises instead of calling sys.exit().
It also runs as a plain script against any endpoint, e.g. the Docker-less emulator:

    eval "$(localstack/emulator env)"
    SMARTSITE_TEMPLATE=infra/template.yaml .build/venv/bin/python localstack/init/ready.d/10-smartsite-tables.py

Environment: SMARTSITE_TEMPLATE (default /opt/smartsite/infra/template.yaml), SMARTSITE_STAGE
(default dev), AWS_ENDPOINT_URL (default http://localhost:4566), AWS_REGION or AWS_DEFAULT_REGION
(default us-east-1), AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (default test).
"""

import os
import re

import boto3
import yaml


class _CfnTag:
    """A CloudFormation short-form intrinsic (!Sub, !Ref, !GetAtt, ...) kept as data."""

    def __init__(self, tag, value):
        self.tag = tag
        self.value = value


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that accepts CFN tags; a subclass so LocalStack's global loaders stay untouched."""


def _construct_tag(loader, tag_suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return _CfnTag(tag_suffix, value)


_CfnLoader.add_multi_constructor("!", _construct_tag)


def _resolve(value, params):
    """Resolve the intrinsics a table property may use: !Sub / Fn::Sub and !Ref / Ref to parameters."""
    if isinstance(value, _CfnTag):
        value = {("Ref" if value.tag == "Ref" else "Fn::" + value.tag): value.value}
    if isinstance(value, dict) and len(value) == 1:
        (key, arg), = value.items()
        if key == "Ref":
            if arg not in params:
                raise ValueError(f"cannot resolve Ref {arg!r}")
            return params[arg]
        if key == "Fn::Sub":
            template, extra = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
            names = {**params, **{k: _resolve(v, params) for k, v in extra.items()}}

            def sub(match):
                name = match.group(1)
                if name not in names:
                    raise ValueError(f"cannot resolve ${{{name}}} in {template!r}")
                return str(names[name])

            return re.sub(r"\$\{([^}!]+)\}", sub, template)
    if isinstance(value, dict):
        return {k: _resolve(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, params) for v in value]
    return value


def table_specs(template_path, stage, region):
    """(table name, create_table kwargs, TimeToLiveSpecification or None) for each table resource."""
    with open(template_path, encoding="utf-8") as f:
        template = yaml.load(f, Loader=_CfnLoader)

    params = {name: p.get("Default") for name, p in (template.get("Parameters") or {}).items()}
    params.update({"Stage": stage, "AWS::Region": region, "AWS::AccountId": "000000000000",
                   "AWS::StackName": f"smartsite-{stage}", "AWS::Partition": "aws"})

    specs = []
    for logical_id, resource in (template.get("Resources") or {}).items():
        if resource.get("Type") != "AWS::DynamoDB::Table":
            continue
        props = _resolve(resource.get("Properties") or {}, params)
        name = props.get("TableName") or f"smartsite-{stage}-{logical_id}"
        billing = props.get("BillingMode", "PROVISIONED")
        kwargs = {
            "TableName": name,
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": billing,
        }
        if billing == "PROVISIONED":
            kwargs["ProvisionedThroughput"] = props["ProvisionedThroughput"]
        for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            if props.get(key):
                kwargs[key] = props[key]
        stream = props.get("StreamSpecification")
        if stream:
            kwargs["StreamSpecification"] = {"StreamEnabled": True, **stream}
        specs.append((name, kwargs, props.get("TimeToLiveSpecification")))
    return specs


def main():
    template_path = os.environ.get("SMARTSITE_TEMPLATE", "/opt/smartsite/infra/template.yaml")
    stage = os.environ.get("SMARTSITE_STAGE", "dev")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    dynamodb = boto3.client(
        "dynamodb",
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL", "http://localhost:4566"),
        region_name=region,
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
    )

    existing = set()
    for page in dynamodb.get_paginator("list_tables").paginate():
        existing.update(page["TableNames"])

    for name, kwargs, ttl in table_specs(template_path, stage, region):
        if name in existing:
            print(f"smartsite-tables: {name} exists, skipped")
        else:
            dynamodb.create_table(**kwargs)
            dynamodb.get_waiter("table_exists").wait(TableName=name)
            print(f"smartsite-tables: {name} created")
        if ttl and ttl.get("Enabled"):
            current = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
            if current.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
                dynamodb.update_time_to_live(
                    TableName=name,
                    TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
                )
                print(f"smartsite-tables: {name} TTL on {ttl['AttributeName']!r} enabled")


main()
