"""Test-only mitmproxy addon: sends the flows of real hostnames to local plain-HTTP fakes.

Load it AFTER contrib/egress-proxy/centaur_egress.py (`-s centaur_egress.py -s route_to_fakes.py`):
mitmproxy runs each hook in addon order, so the allowlist and the secret swap have already
seen the real hostname (`api.openai.com`) when this addon rewrites the upstream to
`127.0.0.1:<port>` over plain HTTP. The Host header keeps the real hostname, so a fake sees
what the real server would. WebSocket handshakes are requests too and are routed the same way.

Option: `--set centaur_routes='{"api.openai.com": "127.0.0.1:8123", ...}'` (JSON).
The production addon knows nothing of this.
"""
import json
import logging

logger = logging.getLogger("route_to_fakes")


class RouteToFakes:
    def __init__(self):
        self.routes: dict[str, tuple[str, int]] = {}

    def load(self, loader):
        loader.add_option("centaur_routes", str, "{}", "JSON {hostname: 'host:port'} of plain-HTTP fakes.")

    def configure(self, updated):
        from mitmproxy import ctx, exceptions

        if "centaur_routes" not in updated:
            return
        try:
            raw = json.loads(ctx.options.centaur_routes or "{}")
            routes = {}
            for hostname, target in raw.items():
                host, _, port = target.rpartition(":")
                routes[hostname.lower()] = (host, int(port))
        except (ValueError, AttributeError) as err:
            raise exceptions.OptionsError(f"route_to_fakes: bad centaur_routes: {err}") from None
        self.routes = routes

    def requestheaders(self, flow):
        if flow.response is not None:  # refused by the egress policy: nothing to route
            return
        target = self.routes.get(flow.request.host.lower().rstrip("."))
        if target is None:
            return
        original = flow.request.host
        host_header = flow.request.host_header
        flow.request.scheme = "http"
        flow.request.host, flow.request.port = target
        flow.request.host_header = host_header or original
        flow.metadata["routed_from"] = original


addons = [RouteToFakes()]
