"""A small evaluator of Kubernetes NetworkPolicy semantics (networking.k8s.io/v1), enough to
prove which connections a rendered chart allows:

- a policy applies to the pods of its namespace that its `podSelector` selects (an empty
  selector selects every pod of the namespace); `matchLabels` and `matchExpressions`
  (`In`, `NotIn`, `Exists`, `DoesNotExist`) are honoured;
- `policyTypes` defaults to `["Ingress"]`, plus `"Egress"` when the policy has `egress`;
- a pod selected by at least one policy of a type is isolated in that direction: only what
  some such policy allows gets through (default deny); a pod no policy selects is open;
- a rule without `from`/`to` matches every peer, without `ports` every port; a peer is a
  `podSelector` (pods of the policy's namespace), a `namespaceSelector` (every pod of the
  selected namespaces), both (those pods in those namespaces), or an `ipBlock` (`cidr` minus
  `except`, matched against endpoints outside the cluster by IP);
- a port is a number or a name (resolved against the destination pod's container ports),
  with `protocol` (default TCP) and optional `endPort`;
- a connection is allowed when the source's egress allows it (if the source is a pod) and
  the destination's ingress allows it (if the destination is a pod). Traffic from the node
  (kubelet probes) is always allowed by Kubernetes and is not modelled.
"""
from __future__ import annotations

import dataclasses
import ipaddress


@dataclasses.dataclass(frozen=True)
class Pod:
    """A pod: where it runs, its labels, and its named container ports (name -> (port, proto))."""

    name: str
    namespace: str
    labels: dict
    ports: dict = dataclasses.field(default_factory=dict)

    def __hash__(self):
        return hash((self.name, self.namespace))


@dataclasses.dataclass(frozen=True)
class External:
    """An endpoint outside the cluster's pod network (the internet, a managed database, the
    Kubernetes API server), known by its IP."""

    name: str
    ip: str


@dataclasses.dataclass(frozen=True)
class Namespace:
    name: str
    labels: dict


def selects(selector: dict | None, labels: dict) -> bool:
    """Whether a LabelSelector selects a set of labels (an empty selector selects all)."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ValueError(f"unknown selector operator {operator}")
    return True


def policy_types(spec: dict) -> list[str]:
    if "policyTypes" in spec:
        return spec["policyTypes"]
    return ["Ingress"] + (["Egress"] if "egress" in spec else [])


class Cluster:
    """Namespaces (with labels) and the NetworkPolicies in force."""

    def __init__(self, policies: list[dict], namespaces: list[Namespace]):
        self.policies = policies
        self.namespaces = {ns.name: ns for ns in namespaces}

    def namespace_labels(self, name: str) -> dict:
        namespace = self.namespaces.get(name)
        labels = dict(namespace.labels) if namespace else {}
        # Kubernetes labels every namespace with its own name.
        labels["kubernetes.io/metadata.name"] = name
        return labels

    def applying(self, pod: Pod, direction: str) -> list[dict]:
        """The policies that select `pod` for `direction` (Ingress or Egress)."""
        return [
            policy
            for policy in self.policies
            if policy["metadata"].get("namespace") == pod.namespace
            and selects(policy["spec"].get("podSelector"), pod.labels)
            and direction in policy_types(policy["spec"])
        ]

    def peer_matches(self, peer: dict, policy_namespace: str, endpoint) -> bool:
        if "ipBlock" in peer:
            if not isinstance(endpoint, External):
                return False
            address = ipaddress.ip_address(endpoint.ip)
            block = peer["ipBlock"]
            if address not in ipaddress.ip_network(block["cidr"], strict=False):
                return False
            return not any(
                address in ipaddress.ip_network(excluded, strict=False)
                for excluded in block.get("except") or []
            )
        if not isinstance(endpoint, Pod):
            return False
        if "namespaceSelector" in peer:
            if not selects(peer["namespaceSelector"], self.namespace_labels(endpoint.namespace)):
                return False
        elif endpoint.namespace != policy_namespace:
            return False
        if "podSelector" in peer:
            return selects(peer["podSelector"], endpoint.labels)
        return True

    @staticmethod
    def port_matches(rule_port: dict, port: int, protocol: str, destination) -> bool:
        if rule_port.get("protocol", "TCP") != protocol:
            return False
        if "port" not in rule_port:
            return True
        wanted = rule_port["port"]
        if isinstance(wanted, str) and not wanted.isdigit():
            if not isinstance(destination, Pod) or wanted not in destination.ports:
                return False
            named_port, named_protocol = destination.ports[wanted]
            return named_port == port and named_protocol == protocol
        low = int(wanted)
        high = int(rule_port.get("endPort", low))
        return low <= port <= high

    def rule_allows(self, rule: dict, peers_key: str, policy_namespace: str, peer, port, protocol, destination) -> bool:
        peers = rule.get(peers_key)
        if peers and not any(self.peer_matches(p, policy_namespace, peer) for p in peers):
            return False
        ports = rule.get("ports")
        if ports and not any(self.port_matches(p, port, protocol, destination) for p in ports):
            return False
        return True

    def egress_allows(self, source: Pod, destination, port: int, protocol: str) -> bool:
        policies = self.applying(source, "Egress")
        if not policies:
            return True
        return any(
            self.rule_allows(rule, "to", policy["metadata"]["namespace"], destination, port, protocol, destination)
            for policy in policies
            for rule in policy["spec"].get("egress") or []
        )

    def ingress_allows(self, destination: Pod, source, port: int, protocol: str) -> bool:
        policies = self.applying(destination, "Ingress")
        if not policies:
            return True
        return any(
            self.rule_allows(rule, "from", policy["metadata"]["namespace"], source, port, protocol, destination)
            for policy in policies
            for rule in policy["spec"].get("ingress") or []
        )

    def allows(self, source, destination, port: int, protocol: str = "TCP") -> bool:
        """Whether a connection from `source` to `destination` on `port`/`protocol` gets
        through every policy in force."""
        if isinstance(source, Pod) and not self.egress_allows(source, destination, port, protocol):
            return False
        if isinstance(destination, Pod) and not self.ingress_allows(destination, source, port, protocol):
            return False
        return True


def pod_of(deployment: dict, name: str) -> Pod:
    """The pod a rendered Deployment runs: its template's labels and named container ports."""
    template = deployment["spec"]["template"]
    ports = {}
    for container in template["spec"]["containers"]:
        for port in container.get("ports") or []:
            if "name" in port:
                ports[port["name"]] = (port["containerPort"], port.get("protocol", "TCP"))
    return Pod(name, deployment["metadata"]["namespace"], dict(template["metadata"]["labels"]), ports)
