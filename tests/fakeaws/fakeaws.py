#!/usr/bin/env python3
"""fakeaws: moto 5.2.5 in server mode, extended in-process so Stowage's AWS provider can be tested
through the real AWS SDK.

Plain moto lacks what an autoscaler's tests need; this module closes the gaps by patching moto in
its own process and putting a WSGI middleware with control endpoints in front of moto's app:

* Pricing API: ``AWSPriceListService.GetProducts`` / ``DescribeServices`` answered here, with
  deterministic on-demand prices derived from moto's own instance catalogue.
* Spot prices: DescribeSpotPriceHistory returns a deterministic per-zone price (a fraction of the
  on-demand price keyed on sha256(zone/type)) instead of moto's constant 0.00001.
* CreateFleet: allocation takes the cheapest override per unit of weight (spot price in the
  override's zone, or the on-demand price), skips offerings marked insufficient and overrides whose
  type is not offered in the zone, and reports those as ``Errors`` like AWS; ``ClientToken`` is
  honoured (a repeated token returns the first call's result and launches nothing); instances get
  their launch template's security groups.
* Faults: ICE (or any other per-override error code) per offering (``POST /_fake/ice``), fleets
  that launch more or fewer instances than asked (``POST /_fake/fleet-fill``), and arbitrary error
  answers such as throttling (``POST /_fake/faults``), all scoped to the caller's account
  (``x-moto-account-id``).
* SSM: the public EKS AL2023 (standard, nvidia, neuron) and Bottlerocket image parameters, pointing
  at AMIs that exist in moto's catalogue of the region.
* Speed: DescribeInstanceTypes / DescribeInstanceTypeOfferings answers are cached (~5 s -> ms), and
  so is DescribeSpotPriceHistory for accounts without spot price overrides (~2 s -> ms).

Start: ``python fakeaws.py --port PORT`` (always binds 127.0.0.1). See README.md for the control API.
These patch moto internals: moto is pinned (requirements.txt) and ``selftest.py`` covers the patches.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import json
import logging
import math
import os
import sys
import threading
import time
import urllib.parse
from typing import Any, Callable, Iterable

DEFAULT_ACCOUNT = "123456789012"
CACHED_ACTIONS = {"DescribeInstanceTypes", "DescribeInstanceTypeOfferings"}
K8S_VERSIONS = ["1.29", "1.30", "1.31", "1.32", "1.33", "1.34", "1.35"]

# --------------------------------------------------------------------------------------------
# State shared by the middleware and the patches (per account where tests could collide).
# --------------------------------------------------------------------------------------------


class State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.fleet_lock = threading.Lock()
        self.ice: dict[str, list[dict[str, Any]]] = {}
        self.faults: dict[str, list[dict[str, Any]]] = {}
        self.fills: dict[str, list[dict[str, Any]]] = {}
        self.prices: dict[str, dict[tuple[str, str, str], float]] = {}
        self.tokens: dict[tuple[str, str, str], tuple[str, dict[str, Any]]] = {}
        self.calls: dict[str, dict[str, int]] = {}
        self.cache: dict[tuple[str, bytes], tuple[str, list[tuple[str, str]], bytes]] = {}

    def clear(self, account: str | None) -> None:
        with self.lock:
            if account is None:
                self.ice.clear()
                self.faults.clear()
                self.fills.clear()
                self.prices.clear()
                self.tokens.clear()
                self.calls.clear()
            else:
                self.ice.pop(account, None)
                self.faults.pop(account, None)
                self.fills.pop(account, None)
                self.prices.pop(account, None)
                self.calls.pop(account, None)
                for key in [k for k in self.tokens if k[0] == account]:
                    del self.tokens[key]

    def offering_error(self, account: str, instance_type: str, zone: str | None,
                       lifecycle: str) -> dict[str, Any] | None:
        """The first ``/_fake/ice`` entry matching the offering (its ``code`` defaults to
        InsufficientInstanceCapacity), or None."""
        with self.lock:
            for e in self.ice.get(account, []):
                if e.get("instance_type") not in (None, instance_type):
                    continue
                if e.get("zone") not in (None, zone):
                    continue
                if e.get("capacity_type") not in (None, lifecycle):
                    continue
                return e
        return None

    def take_fill(self, account: str) -> int:
        """How many instances the next CreateFleet launches beyond (or, negative, short of) what
        it allocated, from the account's ``/_fake/fleet-fill`` entries."""
        with self.lock:
            for f in self.fills.get(account, []):
                if f.get("count", 1) > 0:
                    f["count"] = f.get("count", 1) - 1
                    return int(f.get("extra", 0))
        return 0

    def take_fault(self, account: str, action: str) -> dict[str, Any] | None:
        with self.lock:
            for f in self.faults.get(account, []):
                if f.get("action") in ("*", action) and f.get("count", 1) > 0:
                    f["count"] = f.get("count", 1) - 1
                    return f
        return None

    def count_call(self, account: str, action: str) -> None:
        with self.lock:
            per = self.calls.setdefault(account, {})
            per[action] = per.get(action, 0) + 1


STATE = State()

# --------------------------------------------------------------------------------------------
# Deterministic prices.
# --------------------------------------------------------------------------------------------

GPU_RATE = {
    "H100": 5.5, "H200": 6.2, "B200": 8.0, "A100": 3.25, "A10G": 0.81, "L4": 0.61, "L40S": 1.3,
    "T4": 0.35, "T4g": 0.3, "V100": 2.2, "M60": 0.5, "K80": 0.3, "Radeon Pro V520": 0.4,
    "Gaudi HL-205": 1.2,
}
NEURON_RATE = 0.7
OTHER_ACCELERATOR_RATE = 1.0


def _instance_types() -> dict[str, Any]:
    from moto.ec2.models.instance_types import INSTANCE_TYPES

    return INSTANCE_TYPES


def synthetic_on_demand(instance_type: str) -> float | None:
    info = _instance_types().get(instance_type)
    if info is None:
        return None
    vcpu = info.get("VCpuInfo", {}).get("DefaultVCpus", 1)
    gib = info.get("MemoryInfo", {}).get("SizeInMiB", 1024) / 1024.0
    price = 0.037 * vcpu + 0.00275 * gib
    if "arm64" in info.get("ProcessorInfo", {}).get("SupportedArchitectures", []):
        price *= 0.8
    for gpu in info.get("GpuInfo", {}).get("Gpus", []):
        price += gpu.get("Count", 0) * GPU_RATE.get(gpu.get("Name", ""), OTHER_ACCELERATOR_RATE)
    for dev in info.get("NeuronInfo", {}).get("NeuronDevices", []):
        price += dev.get("Count", 0) * NEURON_RATE
    for acc in info.get("InferenceAcceleratorInfo", {}).get("Accelerators", []):
        price += acc.get("Count", 0) * OTHER_ACCELERATOR_RATE
    return round(price, 6)


def on_demand_price(account: str, instance_type: str) -> float | None:
    with STATE.lock:
        override = STATE.prices.get(account, {}).get((instance_type, "", "on-demand"))
    return override if override is not None else synthetic_on_demand(instance_type)


def spot_price(account: str, instance_type: str, zone: str) -> float | None:
    with STATE.lock:
        per = STATE.prices.get(account, {})
        override = per.get((instance_type, zone, "spot"), per.get((instance_type, "", "spot")))
    if override is not None:
        return override
    od = on_demand_price(account, instance_type)
    if od is None:
        return None
    digest = hashlib.sha256(f"{zone}/{instance_type}".encode()).digest()
    fraction = int.from_bytes(digest[:4], "big") / 0xFFFFFFFF
    return max(round(od * (0.25 + 0.20 * fraction), 6), 0.000001)


# --------------------------------------------------------------------------------------------
# Pricing API (JSON 1.1 protocol, answered by the middleware).
# --------------------------------------------------------------------------------------------

PRODUCT_VARIANTS = [
    # (operatingSystem, tenancy, preInstalledSw, capacitystatus, price factor)
    ("Linux", "Shared", "NA", "Used", 1.0),
    ("Windows", "Shared", "NA", "Used", 1.8),
    ("Linux", "Dedicated", "NA", "Used", 1.1),
    ("Linux", "Shared", "SQL Std", "Used", 2.5),
    ("Linux", "Shared", "NA", "UnusedCapacityReservation", 1.0),
]


def price_list_item(account: str, instance_type: str, region: str, variant: tuple) -> dict[str, Any]:
    os_name, tenancy, sw, status, factor = variant
    base = on_demand_price(account, instance_type) or 0.0
    sku = hashlib.sha256(f"{instance_type}/{region}/{variant}".encode()).hexdigest()[:16].upper()
    info = _instance_types().get(instance_type, {})
    return {
        "product": {
            "productFamily": "Compute Instance",
            "attributes": {
                "instanceType": instance_type,
                "instanceFamily": "General purpose",
                "regionCode": region,
                "location": region,
                "operatingSystem": os_name,
                "tenancy": tenancy,
                "preInstalledSw": sw,
                "capacitystatus": status,
                "licenseModel": "No License required",
                "vcpu": str(info.get("VCpuInfo", {}).get("DefaultVCpus", "")),
                "servicecode": "AmazonEC2",
            },
            "sku": sku,
        },
        "serviceCode": "AmazonEC2",
        "terms": {
            "OnDemand": {
                f"{sku}.JRTCKXETXF": {
                    "offerTermCode": "JRTCKXETXF",
                    "sku": sku,
                    "effectiveDate": "2026-01-01T00:00:00Z",
                    "priceDimensions": {
                        f"{sku}.JRTCKXETXF.6YS6EN2CT7": {
                            "unit": "Hrs",
                            "description": f"${base * factor:.4f} per {os_name} {instance_type} Instance Hour",
                            "pricePerUnit": {"USD": f"{base * factor:.10f}"},
                            "rateCode": f"{sku}.JRTCKXETXF.6YS6EN2CT7",
                        }
                    },
                    "termAttributes": {},
                }
            }
        },
        "version": "20260101000000",
        "publicationDate": "2026-01-01T00:00:00Z",
    }


@functools.lru_cache(maxsize=64)
def _matching_products(filters: tuple, region: str) -> list[tuple[str, tuple]]:
    rows = []
    for instance_type in sorted(_instance_types()):
        for variant in PRODUCT_VARIANTS:
            attrs = {
                "instanceType": instance_type, "regionCode": region, "operatingSystem": variant[0],
                "tenancy": variant[1], "preInstalledSw": variant[2], "capacitystatus": variant[3],
                "servicecode": "AmazonEC2",
            }
            if all(attrs.get(k, v) == v for k, v in filters if k != "location"):
                rows.append((instance_type, variant))
    return rows


def get_products(account: str, body: dict[str, Any]) -> dict[str, Any]:
    if body.get("ServiceCode") != "AmazonEC2":
        return {"FormatVersion": "aws_v1", "PriceList": []}
    filters = {f["Field"]: f["Value"] for f in body.get("Filters", []) if f.get("Type") == "TERM_MATCH"}
    region = filters.get("regionCode", "us-east-1")
    rows = _matching_products(tuple(sorted(filters.items())), region)
    start = int(body.get("NextToken") or 0)
    size = max(1, min(int(body.get("MaxResults") or 100), 100))
    page = rows[start:start + size]
    out: dict[str, Any] = {
        "FormatVersion": "aws_v1",
        "PriceList": [json.dumps(price_list_item(account, t, region, v)) for t, v in page],
    }
    if start + size < len(rows):
        out["NextToken"] = str(start + size)
    return out


# --------------------------------------------------------------------------------------------
# moto patches.
# --------------------------------------------------------------------------------------------


def _offered(region: str) -> set[tuple[str, str]]:
    from moto.ec2.models.instance_types import INSTANCE_TYPE_OFFERINGS

    cache = _offered.__dict__.setdefault("cache", {})
    if region not in cache:
        rows = INSTANCE_TYPE_OFFERINGS.get("availability-zone", {}).get(region, [])
        cache[region] = {(o["InstanceType"], o["Location"]) for o in rows}
    return cache[region]


def _spec_zone(fleet: Any, spec: Any) -> str | None:
    if spec.overrides and spec.overrides.get("AvailabilityZone") and not spec.subnet_id:
        return spec.overrides["AvailabilityZone"]
    if spec.subnet_id:
        try:
            return fleet.ec2_backend.get_subnet(spec.subnet_id).availability_zone
        except Exception:  # an unknown subnet fails the run itself, as in moto
            return None
    return None


def _fleet_error(spec: Any, lifecycle: str, code: str, message: str) -> dict[str, Any]:
    lto: dict[str, Any] = {"LaunchTemplateSpecification": spec.launch_template_spec}
    if spec.overrides:
        lto["Overrides"] = spec.overrides
    return {"LaunchTemplateAndOverrides": lto, "Lifecycle": lifecycle, "ErrorCode": code, "ErrorMessage": message}


def _apply_template_security_groups(backend: Any, instances: list[dict[str, Any]]) -> None:
    """Gives fleet instances their launch template's ``SecurityGroupIds``, as EC2 does (moto
    leaves on-demand ones without groups and spot ones in the VPC's default group)."""
    for item in instances:
        spec = (item.get("LaunchTemplateAndOverrides") or {}).get("LaunchTemplateSpecification") or {}
        try:
            template = backend.get_launch_template(template_id=spec["LaunchTemplateId"])
            data = template.get_version(spec.get("Version") or template.default_version_number).data
        except Exception:  # a template that cannot be read leaves moto's groups alone
            continue
        groups = data.get("SecurityGroupIds") or []
        if groups:
            for instance_id in item.get("InstanceIds", []):
                backend.modify_instance_security_groups(instance_id, groups)


def patch_moto() -> None:
    from moto.core.responses import ActionResult
    from moto.ec2.models import fleets as fleet_models
    from moto.ec2.responses import fleets as fleet_responses
    from moto.ec2.responses import spot_instances as spot_responses
    from moto.ssm import models as ssm_models

    Fleet = fleet_models.Fleet
    original_spot = Fleet.create_spot_requests
    original_on_demand = Fleet.create_on_demand_requests

    def create_spot_requests(self: Any, weight_to_add: float) -> Any:
        self._fake_lifecycle = "spot"
        return original_spot(self, weight_to_add)

    def create_on_demand_requests(self: Any, weight_to_add: float) -> Any:
        self._fake_lifecycle = "on-demand"
        return original_on_demand(self, weight_to_add)

    def get_launch_spec_counts(self: Any, weight_to_add: float) -> tuple[dict[Any, int], float]:
        lifecycle = getattr(self, "_fake_lifecycle", "on-demand")
        account = self.ec2_backend.account_id
        region = self.ec2_backend.region_name
        errors = self.__dict__.setdefault("_fake_errors", [])
        offered = _offered(region)
        best: tuple[float, int, Any] | None = None
        for index, spec in enumerate(self.launch_specs):
            zone = _spec_zone(self, spec)
            if zone is not None and (spec.instance_type, zone) not in offered:
                errors.append(_fleet_error(
                    spec, lifecycle, "Unsupported",
                    f"Your requested instance type ({spec.instance_type}) is not supported in your "
                    f"requested Availability Zone ({zone}).",
                ))
                continue
            injected = STATE.offering_error(account, spec.instance_type, zone, lifecycle)
            if injected is not None:
                code = injected.get("code", "InsufficientInstanceCapacity")
                message = injected.get("message") or (
                    f"We currently do not have sufficient {spec.instance_type} capacity in the "
                    f"Availability Zone you requested ({zone}). Our system will be working on "
                    f"provisioning additional capacity."
                    if code == "InsufficientInstanceCapacity" else f"{code} ({spec.instance_type})"
                )
                errors.append(_fleet_error(spec, lifecycle, code, message))
                continue
            if lifecycle == "spot" and zone is not None:
                price = spot_price(account, spec.instance_type, zone)
            else:
                price = on_demand_price(account, spec.instance_type)
            weight = float(spec.weighted_capacity or 1)
            per_unit = (price if price is not None else math.inf) / weight
            if best is None or per_unit < best[0]:
                best = (per_unit, index, spec)
        if best is None:
            return {}, 0.0
        spec = best[2]
        weight = float(spec.weighted_capacity or 1)
        count = int(math.ceil(weight_to_add / weight))
        # Over- or under-fill once per fleet, as ``/_fake/fleet-fill`` asked (AWS does both).
        if not self.__dict__.get("_fake_fill_taken"):
            self._fake_fill_taken = True
            count = max(0, count + STATE.take_fill(account))
        if count == 0:
            return {}, 0.0
        return {spec: count}, count * weight

    Fleet.create_spot_requests = create_spot_requests
    Fleet.create_on_demand_requests = create_on_demand_requests
    Fleet.get_launch_spec_counts = get_launch_spec_counts

    def create_fleet(self: Any) -> Any:
        token = self._get_param("ClientToken")
        key = (self.current_account, self.region, token) if token else None
        params = json.dumps(sorted((k, v) for k, v in self.querystring.items() if k != "ClientToken"))
        fingerprint = hashlib.sha256(params.encode()).hexdigest()
        with STATE.fleet_lock:
            if key is not None:
                with STATE.lock:
                    previous = STATE.tokens.get(key)
                if previous is not None:
                    if previous[0] != fingerprint:
                        from moto.ec2.exceptions import EC2ClientError

                        raise EC2ClientError(
                            "IdempotentParameterMismatch",
                            "The client token you have provided is associated with a resource that "
                            "is already deleted or has different parameters. Please use a different client token.",
                        )
                    return ActionResult(previous[1])
            self.error_on_dryrun()
            fleet = self.ec2_backend.create_fleet(
                on_demand_options=self._get_param("OnDemandOptions", {}),
                spot_options=self._get_param("SpotOptions", {}),
                target_capacity_specification=self._get_param("TargetCapacitySpecification", {}),
                launch_template_configs=self._get_param("LaunchTemplateConfigs", []),
                excess_capacity_termination_policy=self._get_param("ExcessCapacityTerminationPolicy"),
                replace_unhealthy_instances=self._get_param("ReplaceUnhealthyInstances"),
                terminate_instances_with_expiration=self._get_param(
                    "TerminateInstancesWithExpiration", if_none=True
                ),
                fleet_type=self._get_param("Type", if_none="maintain"),
                valid_from=self._get_param("ValidFrom"),
                valid_until=self._get_param("ValidUntil"),
                tag_specifications=self._get_param("TagSpecifications", []),
            )
            result: dict[str, Any] = {"FleetId": fleet.id}
            if fleet.instances is not None:
                result["Instances"] = fleet.instances
                _apply_template_security_groups(self.ec2_backend, fleet.instances)
            errors = getattr(fleet, "_fake_errors", [])
            if errors:
                result["Errors"] = errors
            if key is not None:
                with STATE.lock:
                    STATE.tokens[key] = (fingerprint, result)
            return ActionResult(result)

    fleet_responses.Fleets.create_fleet = create_fleet

    def describe_spot_price_history(self: Any) -> Any:
        instance_types = self._get_param("InstanceTypes", [])
        filters = self._filters_from_querystring()
        zone = self._get_param("AvailabilityZone")
        if zone:
            filters = dict(filters)
            filters["availability-zone"] = [zone]
        rows = self.ec2_backend.describe_spot_price_history(instance_types, filters)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        history = []
        for row in rows:
            price = spot_price(self.current_account, row["InstanceType"], row["Location"])
            if price is None:
                continue
            history.append({
                "InstanceType": row["InstanceType"],
                "ProductDescription": "Linux/UNIX",
                "SpotPrice": f"{price:.6f}",
                "AvailabilityZone": row["Location"],
                "Timestamp": stamp,
            })
        return ActionResult({"SpotPriceHistory": history})

    spot_responses.SpotInstances.describe_spot_price_history = describe_spot_price_history

    ParameterDict = ssm_models.ParameterDict
    original_check = ParameterDict._check_loading_status

    def check_loading_status(self: Any, key: str) -> None:
        original_check(self, key)
        key = str(key or "")
        if key.startswith("/aws/service/eks") or key.startswith("/aws/service/bottlerocket"):
            if not getattr(self, "_fake_images_loaded", False):
                self._fake_images_loaded = True
                for name, value in image_parameters(self.region_name).items():
                    dict.setdefault(self, name, []).append(ssm_models.Parameter(
                        account_id=self.account_id, name=name, value=value,
                        parameter_type="String", description=None, allowed_pattern=None, keyid=None,
                        last_modified_date=time.time(), version=1, data_type="aws:ec2:image",
                    ))

    ParameterDict._check_loading_status = check_loading_status


def image_parameters(region: str) -> dict[str, str]:
    """The EKS/Bottlerocket image parameters of a region, pointing at moto's AL2023 AMIs."""
    from moto.utilities.utils import load_resource

    try:
        amis = load_resource(f"ec2/resources/latest_amis/{region}.json")
    except FileNotFoundError:
        return {}

    def find(kernel: str, arch: str, minimal: bool) -> str | None:
        for ami in amis:
            name = ami.get("name", "")
            if not name.startswith("al2023-ami-") or ami.get("architecture") != arch:
                continue
            if ("-minimal-" in name) == minimal and f"kernel-{kernel}-" in name:
                return ami["ami_id"]
        return None

    params: dict[str, str] = {}
    for k8s in K8S_VERSIONS:
        for arch in ("x86_64", "arm64"):
            eks = f"/aws/service/eks/optimized-ami/{k8s}/amazon-linux-2023/{arch}"
            br = "/aws/service/bottlerocket/aws-k8s-" + k8s
            for path, ami in (
                (f"{eks}/standard/recommended/image_id", find("6.1", arch, False)),
                (f"{eks}/nvidia/recommended/image_id", find("6.12", arch, False)),
                (f"{br}/{arch}/latest/image_id", find("6.1", arch, True)),
                (f"{br}-nvidia/{arch}/latest/image_id", find("6.12", arch, True)),
            ):
                if ami:
                    params[path] = ami
            if arch == "x86_64":
                ami = find("6.18", arch, False)
                if ami:
                    params[f"{eks}/neuron/recommended/image_id"] = ami
    return params


# --------------------------------------------------------------------------------------------
# The middleware: control endpoints, faults, the Pricing API, the catalogue cache.
# --------------------------------------------------------------------------------------------


def _json_response(start_response: Callable, status: str, payload: Any,
                   content_type: str = "application/json") -> list[bytes]:
    body = json.dumps(payload).encode()
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def _error_response(start_response: Callable, fault: dict[str, Any], json_protocol: bool,
                    service: str = "ec2") -> list[bytes]:
    status = int(fault.get("status", 400))
    code = fault.get("code", "RequestLimitExceeded")
    message = fault.get("message", "Request limit exceeded.")
    reason = {400: "Bad Request", 403: "Forbidden", 429: "Too Many Requests", 500: "Internal Server Error",
              503: "Service Unavailable"}.get(status, "Error")
    if json_protocol:
        body = json.dumps({"__type": code, "message": message}).encode()
        headers = [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", code)]
    elif service != "ec2":
        # The other Query-protocol services (IAM) wrap errors in ErrorResponse, not EC2's Response.
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<ErrorResponse><Error><Type>Sender</Type>'
            f"<Code>{code}</Code><Message>{message}</Message></Error>"
            "<RequestId>fakeaws-fault</RequestId></ErrorResponse>"
        ).encode()
        headers = [("Content-Type", "text/xml")]
    else:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
            f"<Code>{code}</Code><Message>{message}</Message></Error></Errors>"
            "<RequestID>fakeaws-fault</RequestID></Response>"
        ).encode()
        headers = [("Content-Type", "text/xml")]
    headers.append(("Content-Length", str(len(body))))
    start_response(f"{status} {reason}", headers)
    return [body]


def _has_spot_overrides(account: str) -> bool:
    with STATE.lock:
        return any(k[2] == "spot" for k in STATE.prices.get(account, {}))


def _signing_service(environ: dict[str, Any]) -> str:
    auth = environ.get("HTTP_AUTHORIZATION", "")
    marker = "Credential="
    if marker in auth:
        parts = auth.split(marker, 1)[1].split(",", 1)[0].split("/")
        if len(parts) >= 4:
            return parts[3]
    return "ec2"


def _signing_region(environ: dict[str, Any]) -> str:
    auth = environ.get("HTTP_AUTHORIZATION", "")
    marker = "Credential="
    if marker in auth:
        parts = auth.split(marker, 1)[1].split(",", 1)[0].split("/")
        if len(parts) >= 3:
            return parts[2]
    return "us-east-1"


class FakeAws:
    def __init__(self, app: Callable) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        account = environ.get("HTTP_X_MOTO_ACCOUNT_ID", DEFAULT_ACCOUNT)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        environ["wsgi.input"] = io.BytesIO(body)

        if path.startswith("/_fake"):
            return self.control(path, method, account, body, environ, start_response)
        if path.startswith("/moto-api/reset"):
            STATE.clear(None)

        target = environ.get("HTTP_X_AMZ_TARGET", "")
        json_protocol = bool(target)
        if target:
            action = target.rsplit(".", 1)[-1]
        else:
            form = urllib.parse.parse_qs(body.decode("utf-8", "replace")) if body else {}
            query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
            action = (form.get("Action") or query.get("Action") or [""])[0]
        if action:
            STATE.count_call(account, action)
            fault = STATE.take_fault(account, action)
            if fault is not None:
                return _error_response(start_response, fault, json_protocol, _signing_service(environ))

        if target.startswith("AWSPriceListService."):
            request = json.loads(body or b"{}")
            if action == "GetProducts":
                payload = get_products(account, request)
            elif action == "DescribeServices":
                payload = {"Services": [{"ServiceCode": "AmazonEC2", "AttributeNames": [
                    "instanceType", "regionCode", "operatingSystem", "tenancy", "preInstalledSw",
                    "capacitystatus"]}], "FormatVersion": "aws_v1"}
            else:
                return _error_response(start_response, {"status": 400, "code": "InvalidParameterException",
                                                        "message": f"unsupported action {action}"}, True)
            return _json_response(start_response, "200 OK", payload, "application/x-amz-json-1.1")

        if action in CACHED_ACTIONS or (action == "DescribeSpotPriceHistory" and not _has_spot_overrides(account)):
            key = (_signing_region(environ), body)
            with STATE.lock:
                hit = STATE.cache.get(key)
            if hit is None:
                captured: dict[str, Any] = {}

                def capture(status: str, headers: list, exc_info: Any = None) -> Callable:
                    captured["status"], captured["headers"] = status, headers
                    return lambda data: None

                chunks = self.app(environ, capture)
                try:
                    data = b"".join(chunks)
                finally:
                    if hasattr(chunks, "close"):
                        chunks.close()
                hit = (captured["status"], list(captured["headers"]), data)
                if hit[0].startswith("200"):
                    with STATE.lock:
                        STATE.cache[key] = hit
            status, headers, data = hit
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers.append(("Content-Length", str(len(data))))
            start_response(status, headers)
            return [data]

        return self.app(environ, start_response)

    def control(self, path: str, method: str, account: str, body: bytes, environ: dict[str, Any],
                start_response: Callable) -> list[bytes]:
        try:
            payload = json.loads(body) if body else None
        except ValueError as e:
            return _json_response(start_response, "400 Bad Request", {"error": f"body is not JSON: {e}"})
        entries = payload if isinstance(payload, list) else ([payload] if payload else [])
        with STATE.lock:
            if path == "/_fake/health":
                return _json_response(start_response, "200 OK", {"status": "ok"})
            if path == "/_fake" and method == "DELETE":
                STATE.clear(account)
            elif path == "/_fake/ice" and method == "POST":
                STATE.ice.setdefault(account, []).extend(entries)
            elif path == "/_fake/ice" and method == "DELETE":
                STATE.ice.pop(account, None)
            elif path == "/_fake/faults" and method == "POST":
                for e in entries:
                    e.setdefault("count", 1)
                STATE.faults.setdefault(account, []).extend(entries)
            elif path == "/_fake/faults" and method == "DELETE":
                STATE.faults.pop(account, None)
            elif path == "/_fake/fleet-fill" and method == "POST":
                for e in entries:
                    e.setdefault("count", 1)
                STATE.fills.setdefault(account, []).extend(entries)
            elif path == "/_fake/fleet-fill" and method == "DELETE":
                STATE.fills.pop(account, None)
            elif path == "/_fake/prices" and method == "POST":
                per = STATE.prices.setdefault(account, {})
                for e in entries:
                    per[(e["instance_type"], e.get("zone", ""), e.get("capacity_type", "on-demand"))] = float(e["price"])
            elif path == "/_fake/prices" and method == "GET":
                query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
                itype = (query.get("instance_type") or [""])[0]
                zone = (query.get("zone") or [""])[0]
                return _json_response(start_response, "200 OK", {
                    "on_demand": on_demand_price(account, itype),
                    "spot": spot_price(account, itype, zone) if zone else None,
                })
            elif path != "/_fake/state" or method != "GET":
                return _json_response(start_response, "404 Not Found", {"error": f"no control endpoint {method} {path}"})
            state = {
                "ice": STATE.ice.get(account, []),
                "faults": STATE.faults.get(account, []),
                "fleet_fill": STATE.fills.get(account, []),
                "calls": STATE.calls.get(account, {}),
            }
        return _json_response(start_response, "200 OK", state)


def build_app() -> Callable:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    patch_moto()
    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True  # type: ignore[attr-defined]
    return FakeAws(app)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--quiet", action="store_true", help="no per-request log lines")
    parser.add_argument("--exit-on-stdin-eof", action="store_true",
                        help="exit when stdin closes (the parent test process died or finished)")
    args = parser.parse_args(argv)
    if args.exit_on_stdin_eof:
        def watch_stdin() -> None:
            while sys.stdin.buffer.read(4096):
                pass
            os._exit(0)

        threading.Thread(target=watch_stdin, daemon=True).start()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    from werkzeug.serving import run_simple
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    if args.quiet:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = build_app()
    print(f"fakeaws listening on http://127.0.0.1:{args.port}", file=sys.stderr, flush=True)
    run_simple("127.0.0.1", args.port, app, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
