#!/usr/bin/env python3
"""A stand-in for Lambda's SQS event source mapping (for local runs against an emulator):
polls the queue, invokes the delivery function with each batch through the Lambda Invoke API,
deletes the records that succeeded and leaves the reported failures to their changed visibility.
Usage: sqs_event_source.py <emulator endpoint> <queue url> <invoke url of the delivery function>"""
import json, sys, time, urllib.request
import boto3

endpoint, queue_url, invoke_url = sys.argv[1:4]
sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
while True:
    try:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                  MessageSystemAttributeNames=["All"]).get("Messages", [])
    except Exception as err:  # emulator restarting: try again
        print("receive failed:", err, flush=True); time.sleep(1); continue
    if not got:
        continue
    event = {"Records": [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                          "attributes": m.get("Attributes", {}), "messageAttributes": {}, "md5OfBody": m.get("MD5OfBody", ""),
                          "eventSource": "aws:sqs", "eventSourceARN": arn, "awsRegion": "us-east-1"} for m in got]}
    try:
        req = urllib.request.Request(invoke_url, data=json.dumps(event).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=120) as resp:
            result = json.loads(resp.read() or b"{}")
    except Exception as err:  # the function failed as a whole: SQS redelivers after the visibility timeout
        print("invoke failed:", err, flush=True); continue
    failed = {f["itemIdentifier"] for f in (result or {}).get("batchItemFailures", [])}
    for m in got:
        if m["MessageId"] not in failed:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
