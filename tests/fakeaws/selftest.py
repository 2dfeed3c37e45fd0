#!/usr/bin/env python3
"""Self-test of fakeaws's patches through boto3 (moto internals move between versions).

Run: ``~/.cache/stowage/venv/bin/python tests/fakeaws/selftest.py`` (starts its own server on a
free port). The Rust integration tests in crates/aws/tests are what CI runs; this is for changing
fakeaws.py or upgrading moto.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import boto3
from botocore.config import Config

HERE = os.path.dirname(os.path.abspath(__file__))
ACCOUNT = "210987654321"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def control(url: str, method: str, path: str, payload=None):
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(url + path, data=data, method=method,
                                 headers={"x-moto-account-id": ACCOUNT, "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"null")


def client(url: str, service: str, retries: int = 1):
    c = boto3.client(service, region_name="us-east-1", endpoint_url=url, aws_access_key_id="testing",
                     aws_secret_access_key="testing",
                     config=Config(retries={"total_max_attempts": retries, "mode": "standard"}))
    c.meta.events.register("before-sign.*.*", lambda request, **_: request.headers.__setitem__(
        "x-moto-account-id", ACCOUNT))
    return c


def main() -> int:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "fakeaws.py"), "--port", str(port), "--quiet"])
    try:
        for _ in range(200):
            try:
                control(url, "GET", "/_fake/health")
                break
            except OSError:
                time.sleep(0.05)
        ec2, ssm, pricing = client(url, "ec2"), client(url, "ssm"), client(url, "pricing")

        page = pricing.get_products(ServiceCode="AmazonEC2", Filters=[
            {"Type": "TERM_MATCH", "Field": "regionCode", "Value": "us-east-1"},
            {"Type": "TERM_MATCH", "Field": "operatingSystem", "Value": "Linux"},
            {"Type": "TERM_MATCH", "Field": "tenancy", "Value": "Shared"},
            {"Type": "TERM_MATCH", "Field": "preInstalledSw", "Value": "NA"},
            {"Type": "TERM_MATCH", "Field": "capacitystatus", "Value": "Used"},
            {"Type": "TERM_MATCH", "Field": "instanceType", "Value": "m5.large"},
        ])
        item = json.loads(page["PriceList"][0])
        usd = list(list(item["terms"]["OnDemand"].values())[0]["priceDimensions"].values())[0]["pricePerUnit"]["USD"]
        assert abs(float(usd) - 0.096) < 1e-9, usd

        spot = ec2.describe_spot_price_history(InstanceTypes=["m5.large"])["SpotPriceHistory"]
        prices = {r["AvailabilityZone"]: float(r["SpotPrice"]) for r in spot}
        assert len(set(prices.values())) > 1 and all(0.02 < p < 0.05 for p in prices.values()), prices

        image = ssm.get_parameter(Name="/aws/service/eks/optimized-ami/1.33/amazon-linux-2023/x86_64/standard/recommended/image_id")
        ami = image["Parameter"]["Value"]
        assert ec2.describe_images(ImageIds=[ami])["Images"][0]["Architecture"] == "x86_64"

        subnets = ec2.describe_subnets()["Subnets"]
        by_zone = {s["AvailabilityZone"]: s["SubnetId"] for s in subnets}
        lt = ec2.create_launch_template(LaunchTemplateName="selftest", LaunchTemplateData={"ImageId": ami})
        lt_id = lt["LaunchTemplate"]["LaunchTemplateId"]
        overrides = [{"InstanceType": t, "SubnetId": by_zone[z]} for t in ("m5.xlarge", "m5.large") for z in ("us-east-1a", "us-east-1b")]
        cheapest_zone = min(("us-east-1a", "us-east-1b"), key=lambda z: prices[z])

        def fleet(token: str, capacity: str = "spot"):
            return ec2.create_fleet(
                Type="instant", ClientToken=token,
                LaunchTemplateConfigs=[{"LaunchTemplateSpecification": {"LaunchTemplateId": lt_id, "Version": "$Latest"},
                                        "Overrides": overrides}],
                TargetCapacitySpecification={"TotalTargetCapacity": 1, "DefaultTargetCapacityType": capacity},
                SpotOptions={"AllocationStrategy": "price-capacity-optimized"},
                OnDemandOptions={"AllocationStrategy": "lowest-price"})

        out = fleet("t1")
        [inst] = out["Instances"]
        got = ec2.describe_instances(InstanceIds=inst["InstanceIds"])["Reservations"][0]["Instances"][0]
        assert got["InstanceType"] == "m5.large" and got["Placement"]["AvailabilityZone"] == cheapest_zone, got
        again = fleet("t1")
        assert again["Instances"][0]["InstanceIds"] == inst["InstanceIds"], again
        try:
            fleet("t1", capacity="on-demand")
            raise AssertionError("a reused token with other parameters must fail")
        except ec2.exceptions.ClientError as e:
            assert e.response["Error"]["Code"] == "IdempotentParameterMismatch", e.response

        control(url, "POST", "/_fake/ice", [{"instance_type": "m5.large", "capacity_type": "spot"}])
        out = fleet("t2")
        assert {e["ErrorCode"] for e in out["Errors"]} == {"InsufficientInstanceCapacity"}, out["Errors"]
        assert out["Instances"][0]["InstanceType"] == "m5.xlarge", out
        control(url, "POST", "/_fake/ice", [{"instance_type": "m5.xlarge", "capacity_type": "spot"}])
        out = fleet("t3")
        assert not out.get("Instances") and len(out["Errors"]) == 4, out

        control(url, "DELETE", "/_fake/ice")
        control(url, "POST", "/_fake/ice", [{"instance_type": "m5.xlarge", "code": "UnauthorizedOperation",
                                             "message": "denied"}])
        out = fleet("t4")
        assert {e["ErrorCode"] for e in out["Errors"]} == {"UnauthorizedOperation"}, out["Errors"]
        assert out["Instances"][0]["InstanceType"] == "m5.large", out
        control(url, "POST", "/_fake/fleet-fill", [{"extra": 2}])
        out = fleet("t5")
        assert sum(len(i["InstanceIds"]) for i in out["Instances"]) == 3, out
        out = fleet("t6")
        assert sum(len(i["InstanceIds"]) for i in out["Instances"]) == 1, "one fleet over-filled: " + str(out)
        control(url, "POST", "/_fake/fleet-fill", [{"extra": -1}])
        out = fleet("t7")
        assert not out.get("Instances"), out
        assert [f["count"] for f in control(url, "GET", "/_fake/state")["fleet_fill"]] == [0, 0]
        control(url, "DELETE", "/_fake/ice")

        # Fleet instances get their launch template's security groups (moto gives them none).
        group = ec2.create_security_group(GroupName="selftest", Description="selftest")["GroupId"]
        ec2.create_launch_template(LaunchTemplateName="selftest-sg",
                                   LaunchTemplateData={"ImageId": ami, "SecurityGroupIds": [group]})
        out = ec2.create_fleet(
            Type="instant",
            LaunchTemplateConfigs=[{"LaunchTemplateSpecification": {"LaunchTemplateName": "selftest-sg",
                                                                    "Version": "$Latest"},
                                    "Overrides": [{"InstanceType": "m5.large", "SubnetId": by_zone["us-east-1a"]}]}],
            TargetCapacitySpecification={"TotalTargetCapacity": 1, "DefaultTargetCapacityType": "on-demand"})
        got = ec2.describe_instances(InstanceIds=out["Instances"][0]["InstanceIds"])["Reservations"][0]["Instances"][0]
        assert [g["GroupId"] for g in got["SecurityGroups"]] == [group], got["SecurityGroups"]

        control(url, "POST", "/_fake/faults", [{"action": "DescribeSubnets", "count": 1, "status": 503,
                                                "code": "RequestLimitExceeded"}])
        try:
            ec2.describe_subnets()
            raise AssertionError("fault not injected")
        except ec2.exceptions.ClientError as e:
            assert e.response["Error"]["Code"] == "RequestLimitExceeded", e.response
        ec2.describe_subnets()
        state = control(url, "GET", "/_fake/state")
        assert state["calls"]["DescribeSubnets"] >= 3, state
        control(url, "DELETE", "/_fake")
        assert control(url, "GET", "/_fake/state")["ice"] == []
        print("fakeaws selftest: ok")
        return 0
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
