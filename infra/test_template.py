"""Asserts the properties infra/template.yaml must keep (run by `make test` with the tools venv):
runtime and architecture, redrive and visibility, partial batch responses, TTL and backups,
least-privilege IAM (no `*`), secrets as NoEcho parameters, alarms and outputs."""
import json
import os
import unittest

from cfnlint.decode import cfn_yaml

HERE = os.path.dirname(os.path.abspath(__file__))
T = cfn_yaml.load(os.path.join(HERE, "template.yaml"))
RES = T["Resources"]
GLOBAL_FN = T["Globals"]["Function"]
FUNCTIONS = {k: v for k, v in RES.items() if v["Type"] == "AWS::Serverless::Function"}
SCHEDULE_SECONDS = 5 + 300 + 1800 + 7200 + 18000 + 36000 + 36000


def fn_prop(fn, key):
    return fn["Properties"].get(key, GLOBAL_FN.get(key))


def by_type(t):
    return {k: v for k, v in RES.items() if v["Type"] == t}


class Template(unittest.TestCase):
    def test_three_rust_functions_on_al2023_arm64(self):
        self.assertEqual(set(FUNCTIONS), {"IngestFunction", "InstancesFunction", "DeliveryFunction"})
        for name, fn in FUNCTIONS.items():
            self.assertEqual(fn_prop(fn, "Runtime"), "provided.al2023", name)
            self.assertEqual(fn_prop(fn, "Architectures"), ["arm64"], name)
            self.assertEqual(fn_prop(fn, "Handler"), "bootstrap", name)
            self.assertEqual(fn["Metadata"]["BuildMethod"], "rust-cargolambda", name)
        bins = {fn["Metadata"]["BuildProperties"]["Binary"] for fn in FUNCTIONS.values()}
        self.assertEqual(bins, {"ingest", "instances", "delivery"})

    def test_queue_redrive_visibility_and_retention(self):
        q = RES["DeliveryQueue"]["Properties"]
        self.assertEqual(q["RedrivePolicy"]["deadLetterTargetArn"], {"Fn::GetAtt": ["DeliveryDLQ", "Arn"]})
        self.assertGreaterEqual(int(q["RedrivePolicy"]["maxReceiveCount"]), 16,
                                "room for 8 attempts and as many receives that made none")
        timeout = fn_prop(FUNCTIONS["DeliveryFunction"], "Timeout")
        self.assertGreaterEqual(int(q["VisibilityTimeout"]), 6 * int(timeout), "visibility < 6x function timeout")
        self.assertGreater(int(q["MessageRetentionPeriod"]), SCHEDULE_SECONDS, "retention shorter than the retry schedule")
        self.assertEqual(int(RES["DeliveryDLQ"]["Properties"]["MessageRetentionPeriod"]), 1209600)
        self.assertGreater(int(timeout), 15, "delivery timeout must exceed one 15 s attempt")

    def test_sqs_event_source_reports_batch_item_failures_with_a_concurrency_cap(self):
        ev = FUNCTIONS["DeliveryFunction"]["Properties"]["Events"]["Queue"]
        self.assertEqual(ev["Type"], "SQS")
        self.assertEqual(ev["Properties"]["FunctionResponseTypes"], ["ReportBatchItemFailures"])
        self.assertEqual(ev["Properties"]["ScalingConfig"]["MaximumConcurrency"], {"Ref": "DeliveryMaxConcurrency"})
        self.assertIn("DeliveryMaxConcurrency", T["Parameters"])

    def test_table_on_demand_with_ttl_and_point_in_time_recovery(self):
        t = RES["Table"]["Properties"]
        self.assertEqual(t["BillingMode"], "PAY_PER_REQUEST")
        self.assertEqual(t["TimeToLiveSpecification"], {"AttributeName": "expires_at", "Enabled": True})
        self.assertTrue(t["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"])
        self.assertEqual([(g["IndexName"], g["Projection"]["ProjectionType"]) for g in t["GlobalSecondaryIndexes"]],
                         [("gsi1", "ALL"), ("gsi2", "KEYS_ONLY")])

    def test_delivered_notifications_expire_after_a_retention_every_function_knows(self):
        p = T["Parameters"]["EventRetentionDays"]
        self.assertEqual((p["Default"], p["MinValue"], p["MaxValue"]), (30, 1, 36500))
        self.assertEqual(T["Globals"]["Function"]["Environment"]["Variables"]["EVENT_RETENTION_DAYS"], {"Ref": "EventRetentionDays"})

    def test_only_the_delivery_function_reads_extra_callback_roots(self):
        self.assertEqual(T["Parameters"]["CallbackCaBundle"]["Default"], "")
        self.assertEqual(T["Parameters"]["CallbackCaLayerArn"]["Default"], "")
        self.assertNotIn("CALLBACK_CA_BUNDLE", T["Globals"]["Function"]["Environment"]["Variables"])
        for name, fn in FUNCTIONS.items():
            variables = fn["Properties"].get("Environment", {}).get("Variables", {})
            if name == "DeliveryFunction":
                self.assertEqual(variables["CALLBACK_CA_BUNDLE"], {"Ref": "CallbackCaBundle"})
                self.assertEqual(fn["Properties"]["Layers"],
                                 {"Fn::If": ["HasCallbackCaLayer", [{"Ref": "CallbackCaLayerArn"}], {"Ref": "AWS::NoValue"}]})
            else:
                self.assertNotIn("CALLBACK_CA_BUNDLE", variables, name)
                self.assertNotIn("Layers", fn["Properties"], name)

    def test_iam_is_least_privilege(self):
        for name, fn in FUNCTIONS.items():
            policies = fn["Properties"]["Policies"]
            for policy in policies:
                self.assertIsInstance(policy, dict, f"{name}: only inline statements, no managed policy templates")
                for st in policy["Statement"]:
                    actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
                    resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
                    for a in actions:
                        self.assertNotIn("*", a, f"{name}: wildcard action {a}")
                    for r in resources:
                        self.assertNotIn("*", json.dumps(r), f"{name}: wildcard resource {r}")
        ingest = {a for st in FUNCTIONS["IngestFunction"]["Properties"]["Policies"][0]["Statement"] for a in st["Action"]}
        self.assertNotIn("dynamodb:Query", ingest)
        self.assertNotIn("sqs:ReceiveMessage", ingest)
        self.assertNotIn("sqs:DeleteMessage", ingest)

    def test_iam_allows_every_call_each_function_makes(self):
        # The operations each function's code reaches (shared/aws/src/dynamo.rs and queue.rs).
        needs = {
            # Instance, dedupe key (Get/Put), the row (Update), the chunks of a large one (Put).
            "IngestFunction": {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "sqs:SendMessage"},
            # The row and, for a message without its notification, its chunks (Query).
            "DeliveryFunction": {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query",
                                 "sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:ReceiveMessage"},
            # Lists by status read gsi2, then the rows by key (BatchGetItem).
            "InstancesFunction": {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                                  "dynamodb:Query", "sqs:SendMessage"},
        }
        for name, want in needs.items():
            have = {a for st in FUNCTIONS[name]["Properties"]["Policies"][0]["Statement"] for a in st["Action"]}
            self.assertLessEqual(want, have, f"{name} lacks {want - have}")

    def test_secrets_are_noecho_parameters_without_defaults(self):
        for p in ("AdminUserSecret", "AdminOrgSecret"):
            self.assertTrue(T["Parameters"][p].get("NoEcho"), p)
            self.assertNotIn("Default", T["Parameters"][p], p)
        text = open(os.path.join(HERE, "template.yaml")).read()
        self.assertNotIn("sample-user-secret", text)

    def test_routes(self):
        # Each path of the router (shared/core/src/api.rs, served_methods) once, with every method,
        # so that the router answers HEAD and 405 with `Allow` as it does in the local mode.
        def routes(fn):
            events = FUNCTIONS[fn]["Properties"]["Events"].values()
            return sorted((e["Properties"]["Method"], e["Properties"]["Path"]) for e in events)
        self.assertEqual(routes("IngestFunction"), [("ANY", "/events/greenhouse/{id}")])
        paths = ["/instances", "/instances/{id}", "/instances/{id}/token", "/instances/{id}/events",
                 "/instances/{id}/events/redeliver", "/instances/{id}/events/test",
                 "/instances/{id}/events/{eventId}",
                 "/instances/{id}/events/{eventId}/redeliver"]
        self.assertEqual(routes("InstancesFunction"), sorted(("ANY", p) for p in paths))

    def test_alarms_on_dead_letters_errors_and_throttles(self):
        metrics = {(a["Properties"]["Namespace"], a["Properties"]["MetricName"]) for a in by_type("AWS::CloudWatch::Alarm").values()}
        self.assertIn(("AWS/SQS", "ApproximateNumberOfMessagesVisible"), metrics)
        # Dead-lettered notifications never reach the DLQ: the delivery function's EMF metric.
        self.assertIn(("GreenhouseRelay", "DeadLettered"), metrics)
        dead = RES["DeadLetteredAlarm"]["Properties"]
        self.assertEqual(dead["Dimensions"], [{"Name": "Function", "Value": {"Ref": "DeliveryFunction"}}])
        self.assertIn(("AWS/Lambda", "Errors"), metrics)
        self.assertIn(("AWS/Lambda", "Throttles"), metrics)

    def test_outputs(self):
        self.assertIn("ApiBaseUrl", T["Outputs"])
        self.assertIn("/events/greenhouse/{instanceId}", json.dumps(T["Outputs"]["WebhookUrlPattern"]))


if __name__ == "__main__":
    unittest.main(verbosity=2)
