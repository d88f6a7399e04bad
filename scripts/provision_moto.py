#!/usr/bin/env python3
"""Creates the DynamoDB table and the SQS queues in an emulator, shaped as infra/template.yaml
declares them. Prints `TABLE_NAME=..` and `QUEUE_URL=..` lines for an env file.
Usage: provision_moto.py <endpoint> [name prefix]"""
import json, sys
import boto3

endpoint, prefix = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "greenhouse-relay")
kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
ddb, sqs = boto3.client("dynamodb", **kw), boto3.client("sqs", **kw)
table = f"{prefix}-table"
ddb.create_table(
    TableName=table, BillingMode="PAY_PER_REQUEST",
    AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk")],
    KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    GlobalSecondaryIndexes=[{"IndexName": "gsi1", "Projection": {"ProjectionType": "ALL"},
                             "KeySchema": [{"AttributeName": "gsi1pk", "KeyType": "HASH"}, {"AttributeName": "gsi1sk", "KeyType": "RANGE"}]},
                            {"IndexName": "gsi2", "Projection": {"ProjectionType": "KEYS_ONLY"},
                             "KeySchema": [{"AttributeName": "gsi2pk", "KeyType": "HASH"}, {"AttributeName": "gsi2sk", "KeyType": "RANGE"}]}])
ddb.update_time_to_live(TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})
dlq = sqs.create_queue(QueueName=f"{prefix}-dlq")["QueueUrl"]
arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
q = sqs.create_queue(QueueName=f"{prefix}-deliveries", Attributes={
    "VisibilityTimeout": "60", "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "16"})})["QueueUrl"]
print(f"TABLE_NAME={table}\nQUEUE_URL={q}")
