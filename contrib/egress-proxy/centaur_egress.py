"""Centaur's egress policy as a mitmproxy addon: the part of iron-proxy that Centaur uses.

Reads the `proxy.yaml` that contrib/chart renders for iron-proxy and enforces it:

- `transforms: [{name: allowlist, config: {domains: [...]}}]`: any other host is refused with
  403, at CONNECT time and on every request (inside a tunnel the Host header picks the
  upstream, so each request is checked again). `*` and a leading `*.` wildcard (which also
  matches the bare domain) behave as in iron-proxy.
- `{name: secrets, config: {secrets: [{source, replace: {proxy_value, match_headers}, rules}]}}`:
  on an https request to a host matched by one of `rules`, every occurrence of `proxy_value`
  in the listed headers (all headers when `match_headers` is empty) is replaced with the real
  value; an `Authorization: Basic` payload is decoded, replaced and re-encoded. WebSocket
  handshakes are requests like any other. Sources: `type: env` (the proxy's own environment).

Stricter than iron-proxy on purpose: an unknown or misspelt key anywhere, a feature iron-proxy
has but this proxy does not implement, or a source it cannot serve (1Password) refuses to load,
naming the key's path. Secret values are never logged: log lines name the variable only.

The loader (parse_config, load_policy) is plain Python: mitmproxy is imported only inside the
addon's hooks, so tests and tools can check a proxy.yaml without it.

Run: mitmdump -s contrib/egress-proxy/centaur_egress.py --set centaur_config=proxy.yaml ...
(see README.md beside this file).
"""
import base64
import binascii
import logging
import os
import re
from dataclasses import dataclass

import yaml

logger = logging.getLogger("centaur_egress")

# ---------------------------------------------------------------------------------------------
# Configuration: parsing (structure, strict field names) and resolution (secret values).
# ---------------------------------------------------------------------------------------------


class ConfigError(Exception):
    """The configuration cannot be used. `problems` lists each one with the path of its key."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class UnservableSourceError(ConfigError):
    """Structurally valid, but a secret source is of a type this proxy cannot read."""


class MissingSecretError(ConfigError):
    """An env-source secret names a variable that is unset (or empty) in the proxy's env."""


# Keys iron-proxy reads that only configure its own listeners, TLS files, management API,
# DNS server, metrics and logging. Accepted (so the chart's file loads) and not used here:
# mitmdump's own flags decide where this proxy listens and which CA it uses.
IGNORED_SECTIONS = {
    "proxy": {
        "tunnel_listen", "http_listen", "https_listen", "upstream_response_header_timeout",
        "max_request_body_bytes", "max_response_body_bytes", "upstream_deny_cidrs",
    },
    "management": {"listen", "api_key_env"},
    "tls": {"mode", "ca_cert", "ca_key", "cert_cache_size", "leaf_cert_expiry_hours"},
    "log": {"level"},
    "dns": {"listen", "proxy_ip", "upstream_resolver", "passthrough", "records"},
    "metrics": {"listen"},
}
TOP_LEVEL = set(IGNORED_SECTIONS) | {"transforms"}
# Known iron-proxy features this proxy does not implement: refused with this explanation.
UNSUPPORTED = "is an iron-proxy feature the local egress proxy does not implement"
SOURCE_FIELDS = {
    "env": {"type", "var", "ttl"},
    "1password": {"type", "secret_ref", "token_env", "ttl", "failure_ttl"},
    "1password_connect": {"type", "secret_ref", "host_env", "token_env", "ttl", "failure_ttl"},
}
KNOWN_UNSUPPORTED_SOURCE_TYPES = {"file", "control_plane", "aws_sm", "aws_ssm"}
SERVABLE_SOURCE_TYPES = {"env"}
GO_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+$")
LOG_LEVELS = {"debug", "info", "warn", "error"}


@dataclass(frozen=True)
class Source:
    type: str
    path: str  # e.g. transforms[1].config.secrets[0].source
    var: str | None = None  # env
    secret_ref: str | None = None  # 1password, 1password_connect


@dataclass(frozen=True)
class Binding:
    """One `secrets` entry in `replace` mode."""

    path: str
    source: Source
    proxy_value: str
    match_headers: tuple[str, ...]  # lower-case names; empty = every header
    hosts: tuple[str, ...]  # host patterns of `rules`

    @property
    def name(self) -> str:
        """What log lines call this secret: its variable (env) or placeholder, never a value."""
        return self.source.var or self.proxy_value


@dataclass(frozen=True)
class ProxyConfig:
    """A structurally valid proxy.yaml: what to allow and what to swap, values not resolved."""

    domains: tuple[str, ...]
    bindings: tuple[Binding, ...]


class _Checker:
    def __init__(self):
        self.problems: list[str] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}" if path else message)

    def mapping(self, value, path, known, required=()):
        """The value as a dict if it is one with only `known` keys (and all `required`)."""
        if not isinstance(value, dict):
            self.problem(path, f"expected a mapping, got {_kind(value)}")
            return None
        for key in value:
            if key not in known:
                self.problem(_join(path, key), f"unknown key {key!r} (expected one of: {', '.join(sorted(known))})")
        for key in required:
            if key not in value:
                self.problem(_join(path, key), "is required")
        return value

    def string(self, value, path, allow_empty=False):
        if not isinstance(value, str) or (not allow_empty and not value.strip()):
            self.problem(path, f"expected a non-empty string, got {_kind(value)}")
            return None
        return value

    def strings(self, value, path):
        if not isinstance(value, list):
            self.problem(path, f"expected a list of strings, got {_kind(value)}")
            return []
        return [s for i, item in enumerate(value) if (s := self.string(item, f"{path}[{i}]")) is not None]

    def duration(self, value, path):
        if self.string(value, path) is not None and not GO_DURATION.match(value):
            self.problem(path, f"{value!r} is not a duration like 30s, 10m or 1h")

    def unsupported_if_set(self, mapping, keys, path):
        for key in keys:
            if mapping.get(key):
                self.problem(_join(path, key), UNSUPPORTED)


def _join(path: str, key) -> str:
    return f"{path}.{key}" if path else str(key)


def _kind(value) -> str:
    return "nothing" if value is None else type(value).__name__


def parse_config(text: str) -> ProxyConfig:
    """Checks a proxy.yaml strictly; raises ConfigError listing every problem found."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError([f"not valid YAML: {err}"]) from None
    check = _Checker()
    root = check.mapping(document, "", TOP_LEVEL, required=("transforms",))
    if root is None:
        raise ConfigError(check.problems)
    for section, keys in IGNORED_SECTIONS.items():
        if section in root:
            body = check.mapping(root[section], section, keys)
            if section == "tls" and body and body.get("mode", "mitm") != "mitm":
                check.problem("tls.mode", f"{body['mode']!r}: the local proxy always terminates TLS (mitm)")
            if section == "log" and body and "level" in body and body["level"] not in LOG_LEVELS:
                check.problem("log.level", f"{body['level']!r} is not one of {', '.join(sorted(LOG_LEVELS))}")
            if section == "proxy" and body and "upstream_response_header_timeout" in body:
                check.duration(body["upstream_response_header_timeout"], "proxy.upstream_response_header_timeout")

    domains: list[str] | None = None
    bindings: list[Binding] = []
    seen_secrets = False
    transforms = root.get("transforms")
    if not isinstance(transforms, list):
        check.problem("transforms", f"expected a list, got {_kind(transforms)}")
        transforms = []
    for i, entry in enumerate(transforms):
        path = f"transforms[{i}]"
        entry = check.mapping(entry, path, {"name", "config"}, required=("name", "config"))
        if entry is None or "name" not in entry or "config" not in entry:
            continue
        name = entry["name"]
        if name == "allowlist":
            if domains is not None:
                check.problem(path, "a second allowlist transform (give one)")
            domains = _parse_allowlist(check, entry["config"], f"{path}.config")
        elif name == "secrets":
            if seen_secrets:
                check.problem(path, "a second secrets transform (give one)")
            seen_secrets = True
            bindings.extend(_parse_secrets(check, entry["config"], f"{path}.config"))
        else:
            check.problem(f"{path}.name", f"transform {name!r} {UNSUPPORTED} (allowlist, secrets)")
    if domains is None:
        check.problem("transforms", "no allowlist transform: the local proxy refuses to run without one")
    if check.problems:
        raise ConfigError(check.problems)
    return ProxyConfig(domains=tuple(domains or ()), bindings=tuple(bindings))


def _parse_host_pattern(check: _Checker, value, path):
    pattern = check.string(value, path)
    if pattern is None:
        return None
    pattern = pattern.strip().lower().rstrip(".")
    bare = pattern[2:] if pattern.startswith("*.") else pattern
    if pattern != "*" and (not bare or any(c in bare for c in "*?[]/:")):
        check.problem(path, f"{value!r}: only exact hosts, '*.' + domain and '*' are supported")
        return None
    return pattern


def _parse_allowlist(check: _Checker, config, path):
    config = check.mapping(config, path, {"domains", "cidrs", "rules", "warn"}, required=("domains",))
    if config is None:
        return []
    check.unsupported_if_set(config, ("cidrs", "rules", "warn"), path)
    if "domains" not in config:
        return []
    items = config["domains"]
    if not isinstance(items, list):
        check.problem(_join(path, "domains"), f"expected a list of strings, got {_kind(items)}")
        return []
    patterns = (_parse_host_pattern(check, d, f"{path}.domains[{i}]") for i, d in enumerate(items))
    return [p for p in patterns if p]


def _parse_secrets(check: _Checker, config, path):
    config = check.mapping(config, path, {"secrets"}, required=("secrets",))
    if config is None or "secrets" not in config:
        return []
    entries = config["secrets"]
    if not isinstance(entries, list):
        check.problem(_join(path, "secrets"), f"expected a list, got {_kind(entries)}")
        return []
    bindings = []
    for i, entry in enumerate(entries):
        binding = _parse_secret(check, entry, f"{path}.secrets[{i}]")
        if binding:
            bindings.append(binding)
    return bindings


def _parse_secret(check: _Checker, entry, path):
    known = {"source", "replace", "rules", "inject", "proxy_value", "match_headers", "match_body",
             "require", "allow_connect_without_header"}
    entry = check.mapping(entry, path, known, required=("source", "replace", "rules"))
    if entry is None:
        return None
    for key in ("inject", "proxy_value", "match_headers", "match_body", "require", "allow_connect_without_header"):
        if key in entry:
            check.problem(_join(path, key), f"{UNSUPPORTED} (use replace: {{proxy_value, match_headers}} and rules)")
    source = _parse_source(check, entry.get("source"), f"{path}.source") if "source" in entry else None
    replace = None
    if "replace" in entry:
        rpath = f"{path}.replace"
        replace = check.mapping(
            entry["replace"], rpath,
            {"proxy_value", "match_headers", "match_body", "match_path", "match_query", "require",
             "allow_connect_without_header"},
            required=("proxy_value",),
        )
        if replace is not None:
            check.unsupported_if_set(
                replace, ("match_body", "match_path", "match_query", "require", "allow_connect_without_header"), rpath
            )
    proxy_value = check.string(replace.get("proxy_value"), f"{path}.replace.proxy_value") if replace else None
    headers: list[str] = []
    if replace and replace.get("match_headers") is not None:
        headers = check.strings(replace["match_headers"], f"{path}.replace.match_headers")
        for j, header in enumerate(headers):
            if header.startswith("/") and header.endswith("/") and len(header) >= 2:
                check.problem(f"{path}.replace.match_headers[{j}]", f"regex header patterns {UNSUPPORTED}")
    hosts = []
    if "rules" in entry:
        rules = entry["rules"]
        if not isinstance(rules, list) or not rules:
            check.problem(f"{path}.rules", f"expected a non-empty list of {{host: ...}}, got {_kind(rules)}")
            rules = []
        for j, rule in enumerate(rules):
            rule_path = f"{path}.rules[{j}]"
            rule = check.mapping(rule, rule_path, {"host", "cidr", "methods", "paths"}, required=("host",))
            if rule is None:
                continue
            check.unsupported_if_set(rule, ("cidr", "methods", "paths"), rule_path)
            if "host" in rule and (host := _parse_host_pattern(check, rule["host"], f"{rule_path}.host")):
                hosts.append(host)
    if source is None or proxy_value is None or not hosts:
        return None
    return Binding(
        path=path, source=source, proxy_value=proxy_value,
        match_headers=tuple(h.lower() for h in headers), hosts=tuple(hosts),
    )


def _parse_source(check: _Checker, value, path):
    if not isinstance(value, dict):
        check.problem(path, f"expected a mapping, got {_kind(value)}")
        return None
    kind = value.get("type")
    if kind in KNOWN_UNSUPPORTED_SOURCE_TYPES:
        check.problem(f"{path}.type", f"source type {kind!r} {UNSUPPORTED} (env)")
        return None
    if kind not in SOURCE_FIELDS:
        check.problem(f"{path}.type", f"unknown source type {kind!r} (expected one of: {', '.join(sorted(SOURCE_FIELDS))})")
        return None
    required = ("type", "var") if kind == "env" else ("type", "secret_ref")
    check.mapping(value, path, SOURCE_FIELDS[kind], required=required)
    for key in ("ttl", "failure_ttl"):
        if key in value:
            check.duration(value[key], f"{path}.{key}")
    for key in ("token_env", "host_env"):
        if key in value:
            check.string(value[key], f"{path}.{key}")
    if kind == "env":
        var = check.string(value.get("var"), f"{path}.var") if "var" in value else None
        return Source(type=kind, path=path, var=var) if var else None
    ref = check.string(value.get("secret_ref"), f"{path}.secret_ref") if "secret_ref" in value else None
    if ref is None:
        return None
    segments = ref[len("op://"):].split("/") if ref.startswith("op://") else []
    if not 3 <= len(segments) <= 4 or not all(segments):
        check.problem(f"{path}.secret_ref", f"{ref!r} is not op://vault/item/[section/]field")
        return None
    return Source(type=kind, path=path, secret_ref=ref)


@dataclass(frozen=True)
class Policy:
    """A loaded configuration with its secret values: what the addon enforces."""

    domains: tuple[str, ...]
    bindings: tuple[tuple[Binding, bytes], ...]  # (binding, real value)

    def allows(self, host: str) -> bool:
        return any(host_matches(pattern, host) for pattern in self.domains)

    def swap_headers(self, host: str, fields):
        """Replaces placeholders in header fields ((name, value) byte pairs) bound to `host`.

        Returns the new fields and the names of the secrets swapped (for logs)."""
        fields = list(fields)
        swapped = []
        for binding, real in self.bindings:
            if not any(host_matches(pattern, host) for pattern in binding.hosts):
                continue
            placeholder = binding.proxy_value.encode()
            hit = False
            for i, (name, value) in enumerate(fields):
                lower = name.decode("latin-1").lower()
                if binding.match_headers and lower not in binding.match_headers:
                    continue
                new = replace_in_header(lower, value, placeholder, real)
                if new != value:
                    fields[i] = (name, new)
                    hit = True
            if hit:
                swapped.append(binding.name)
        return tuple(fields), swapped


def host_matches(pattern: str, host: str) -> bool:
    """iron-proxy's glob: '*' is any host, '*.example.com' is example.com and its subdomains."""
    host = host.lower().rstrip(".")
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host == pattern[2:] or host.endswith(pattern[1:])
    return host == pattern


def _hostname(authority: str) -> str:
    """The host of a Host header / authority ("h", "h:443", "[::1]:443")."""
    if authority.startswith("["):
        return authority[1:].split("]", 1)[0]
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority


def replace_in_header(lower_name: str, value: bytes, placeholder: bytes, real: bytes) -> bytes:
    """iron-proxy's replaceInHeader: for `Authorization: Basic <b64>` the payload is decoded,
    replaced and re-encoded; every other value is replaced as it stands."""
    if lower_name == "authorization" and value.startswith(b"Basic "):
        try:
            decoded = base64.b64decode(value[len(b"Basic "):], validate=True)
        except (binascii.Error, ValueError):
            decoded = None
        if decoded is not None:
            if placeholder not in decoded:
                return value
            return b"Basic " + base64.b64encode(decoded.replace(placeholder, real))
    return value.replace(placeholder, real)


def resolve(config: ProxyConfig, environ, skip_unset: bool = False) -> Policy:
    """Reads each binding's secret. Refuses sources this proxy cannot serve (naming them) and,
    unless `skip_unset`, env sources whose variable is unset or empty."""
    unservable = [
        f"{b.source.path}.type: source type {b.source.type!r} cannot be served by the local egress proxy "
        f"(it reads secrets from its environment: type: env)"
        for b in config.bindings
        if b.source.type not in SERVABLE_SOURCE_TYPES
    ]
    if unservable:
        raise UnservableSourceError(unservable)
    resolved = []
    missing = []
    for binding in config.bindings:
        value = environ.get(binding.source.var or "", "")
        if not value:
            if skip_unset:
                logger.warning(
                    "centaur_egress: skipping secret %s for %s: environment variable %s is unset",
                    binding.proxy_value, ", ".join(binding.hosts), binding.source.var,
                )
                continue
            missing.append(f"{binding.source.path}.var: environment variable {binding.source.var} is not set")
            continue
        resolved.append((binding, value.encode()))
    if missing:
        raise MissingSecretError(missing)
    return Policy(domains=config.domains, bindings=tuple(resolved))


def load_policy(text: str, environ=None, skip_unset: bool = False) -> Policy:
    """parse_config + resolve, against `environ` (default: this process's environment)."""
    return resolve(parse_config(text), os.environ if environ is None else environ, skip_unset)


# ---------------------------------------------------------------------------------------------
# The mitmproxy addon.
# ---------------------------------------------------------------------------------------------


class CentaurEgress:
    """Allowlist and secret swapping. Fails closed: with no loaded policy every flow is refused."""

    def __init__(self):
        self.policy: Policy | None = None

    def load(self, loader):
        loader.add_option("centaur_config", str, "", "Path of the iron-proxy proxy.yaml to enforce.")
        loader.add_option(
            "centaur_skip_unset", bool, False,
            "Skip (with a log line) env-source secrets whose variable is unset instead of refusing to start.",
        )

    def configure(self, updated):
        from mitmproxy import ctx, exceptions

        options = ctx.options
        # These would write request headers, after the swap, to the terminal or a file.
        if "flow_detail" in updated and options.flow_detail > 1:
            self.policy = None
            raise exceptions.OptionsError("centaur_egress: flow_detail > 1 would print real secrets; use 0 or 1")
        if "save_stream_file" in updated and options.save_stream_file:
            self.policy = None
            raise exceptions.OptionsError("centaur_egress: save_stream_file would store real secrets; unset it")
        if not {"centaur_config", "centaur_skip_unset"} & set(updated):
            return
        self.policy = None
        path = options.centaur_config
        if not path:
            raise exceptions.OptionsError("centaur_egress: set --set centaur_config=<path of proxy.yaml>")
        try:
            with open(path, encoding="utf-8") as file:
                text = file.read()
        except OSError as err:
            raise exceptions.OptionsError(f"centaur_egress: cannot read {path}: {err.strerror}") from None
        try:
            policy = load_policy(text, os.environ, options.centaur_skip_unset)
        except ConfigError as err:
            raise exceptions.OptionsError(
                f"centaur_egress: refusing to load {path}: " + "; ".join(err.problems)
            ) from None
        self.policy = policy
        logger.info(
            "centaur_egress: loaded %s: %d allowed domains, secrets bound: %s",
            path, len(policy.domains),
            ", ".join(f"{b.name}@{'/'.join(b.hosts)}" for b, _ in policy.bindings) or "none",
        )

    def running(self):
        # Logged once the policy is loaded and the listeners are up: what launchers wait for.
        if self.policy is not None:
            logger.info("centaur_egress: ready")

    def _refuse(self, flow, reason: str) -> None:
        from mitmproxy import http

        host = flow.request.host
        logger.warning("centaur_egress: refused %s %s: %s", flow.request.method, host, reason)
        flow.response = http.Response.make(
            403, f"centaur egress proxy: {host} refused: {reason}\n".encode(), {"Content-Type": "text/plain"}
        )
        flow.metadata["centaur_refused"] = reason

    def _admit(self, flow) -> bool:
        if self.policy is None:
            self._refuse(flow, "egress policy not loaded")
            return False
        if not self.policy.allows(flow.request.host):
            self._refuse(flow, "host not on the allowlist")
            return False
        # Inside a tunnel mitmproxy connects to the CONNECT host; a Host header naming another
        # host is refused too rather than passed on to be interpreted by the upstream.
        claimed = flow.request.host_header
        if flow.request.method != "CONNECT" and claimed and not self.policy.allows(_hostname(claimed)):
            self._refuse(flow, f"Host header {_hostname(claimed)} not on the allowlist")
            return False
        return True

    def http_connect(self, flow):
        self._admit(flow)

    def requestheaders(self, flow):
        # Runs before any addon loaded after this one (e.g. a test router), on the host the
        # client asked for: the allowlist and the secret rules see the real hostname.
        if flow.response is not None or not self._admit(flow):
            return
        if flow.request.scheme != "https":
            return  # a secret is never sent in clear text
        fields, swapped = self.policy.swap_headers(flow.request.host, flow.request.headers.fields)
        if swapped:
            flow.request.headers.fields = fields
            flow.metadata["centaur_swapped"] = swapped
            logger.debug("centaur_egress: swapped %s for %s", ", ".join(swapped), flow.request.host)

    def responseheaders(self, flow):
        # Model APIs stream (SSE): pass bytes on as they arrive. 101 switches protocols.
        if flow.response.status_code != 101:
            flow.response.stream = True


addons = [CentaurEgress()]
