//! Egress settings every sandbox gets, whichever backend runs it (workspace.md "Egress",
//! execution.md "Sandbox pod spec"): all HTTP(S) goes through the credential-swapping
//! proxy, every TLS stack trusts the proxy's CA, and only loopback and an in-cluster API
//! are reached directly. Pure: no I/O, so both backends and their tests share one contract.

use std::collections::BTreeMap;

/// The proxy variables, upper and lower case (tools disagree on which they read).
pub const PROXY_VARS: [&str; 4] = ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"];
/// The bypass list variables.
pub const NO_PROXY_VARS: [&str; 2] = ["NO_PROXY", "no_proxy"];
/// The CA bundle variables: OpenSSL/rustls, Node, Python requests, git.
pub const CA_VARS: [&str; 4] = [
    "SSL_CERT_FILE",
    "NODE_EXTRA_CA_CERTS",
    "REQUESTS_CA_BUNDLE",
    "GIT_SSL_CAINFO",
];

/// The egress environment of a sandbox: [`PROXY_VARS`] = `proxy_url`, [`NO_PROXY_VARS`] =
/// `localhost,127.0.0.1` plus the API's host when it is an in-cluster Service (an API
/// outside the cluster, such as API Gateway, is reached only through the proxy), and
/// [`CA_VARS`] = `ca_file` (the path of the proxy's CA certificate *inside* the sandbox).
/// Backends insert these after the caller's env, so a caller cannot override them.
pub fn egress_env(proxy_url: &str, ca_file: &str, api_url: &str) -> BTreeMap<String, String> {
    let api_host = host_of(api_url);
    let mut bypass = vec!["localhost", "127.0.0.1"];
    if is_in_cluster(api_host) && !bypass.contains(&api_host) {
        bypass.push(api_host);
    }
    let no_proxy = bypass.join(",");
    let mut vars = BTreeMap::new();
    for name in PROXY_VARS {
        vars.insert(name.to_owned(), proxy_url.to_owned());
    }
    for name in NO_PROXY_VARS {
        vars.insert(name.to_owned(), no_proxy.clone());
    }
    for name in CA_VARS {
        vars.insert(name.to_owned(), ca_file.to_owned());
    }
    vars
}

/// A Service name (`api`, `api.ns`, `api.ns.svc[.cluster.local]`), not an outside host.
pub fn is_in_cluster(host: &str) -> bool {
    !host.is_empty()
        && (!host.contains('.') || host.ends_with(".svc") || host.ends_with(".svc.cluster.local"))
}

/// `http://api.ns.svc:8000/x` → `api.ns.svc`.
pub fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    match host_port.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => host_port,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_proxy_and_ca_variable_is_set() {
        let env = egress_env(
            "http://proxy:8080",
            "/firewall-certs/ca.crt",
            "http://api.ns.svc:8000",
        );
        for name in PROXY_VARS {
            assert_eq!(env[name], "http://proxy:8080", "{name}");
        }
        for name in CA_VARS {
            assert_eq!(env[name], "/firewall-certs/ca.crt", "{name}");
        }
        assert_eq!(env["NO_PROXY"], "localhost,127.0.0.1,api.ns.svc");
        assert_eq!(env["no_proxy"], env["NO_PROXY"]);
        assert_eq!(env.len(), 10, "{env:?}");
    }

    #[test]
    fn an_api_outside_the_cluster_goes_through_the_proxy() {
        let env = egress_env(
            "http://proxy:8080",
            "/ca.crt",
            "https://abc123.execute-api.us-east-1.amazonaws.com/prod",
        );
        assert_eq!(env["NO_PROXY"], "localhost,127.0.0.1");
    }

    #[test]
    fn a_loopback_api_is_not_listed_twice() {
        for api in ["http://127.0.0.1:8000", "http://localhost:8000"] {
            let env = egress_env("http://127.0.0.1:8080", "/ca.crt", api);
            assert_eq!(env["NO_PROXY"], "localhost,127.0.0.1", "{api}");
        }
    }

    #[test]
    fn host_of_strips_scheme_port_and_path() {
        assert_eq!(host_of("http://api.ns.svc:8000/x"), "api.ns.svc");
        assert_eq!(host_of("https://api.example.com"), "api.example.com");
        assert_eq!(host_of("http://user@host:1"), "host");
        assert_eq!(host_of(""), "");
    }
}
