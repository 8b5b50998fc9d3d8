{{/*
iron-proxy's proxy.yaml, rendered from values: the allowlist of the bound hosts plus
ironProxy.extraAllowedDomains, and one secret binding per enabled harness.

Field names are the ones iron-proxy 0.46.x reads (contrib/chart/README.md, "iron-proxy: what
the chart relies on"). Two parsers with different strictness read this file:
- the top level and the dns/proxy/tls/metrics/management/log sections are decoded strictly
  (internal/config/config.go, KnownFields): an unknown key there stops the proxy at start-up;
- a transform's config is decoded leniently: an unknown key there is silently ignored
  (`hosts:` instead of `rules:` binds nothing), so tests/chart checks every key by name.

Listeners: the pod runs as uid 65532 with every capability dropped, so nothing may bind a port
below 1024. iron-proxy always starts its DNS, HTTP and HTTPS listeners (an empty address falls
back to :53, :80, :443) and refuses to start without dns.proxy_ip. Sandboxes only use the
CONNECT tunnel, so the three unused listeners are moved onto loopback high ports where
nothing reaches them; metrics (GET /healthz, the probes) stays on :9090.
*/}}
{{- define "centaur.ironProxyConfig" -}}
{{- $source := .Values.ironProxy.secretSource }}
{{- $bindings := include "centaur.bindings" . | fromYamlArray }}
{{- $domains := list }}
{{- range $bindings }}{{ $domains = append $domains .host }}{{ end }}
{{- $domains = concat $domains .Values.ironProxy.extraAllowedDomains | uniq -}}
dns:
  listen: "127.0.0.1:8053"
  proxy_ip: "127.0.0.1"
proxy:
  tunnel_listen: ":8080"
  http_listen: "127.0.0.1:8081"
  https_listen: "127.0.0.1:8443"
  upstream_response_header_timeout: {{ .Values.ironProxy.upstreamResponseHeaderTimeout | quote }}
management:
  listen: ":9092"
  api_key_env: IRON_MANAGEMENT_API_KEY
metrics:
  listen: ":9090"
tls:
  mode: mitm
  ca_cert: /etc/iron-proxy/ca/ca.crt
  ca_key: /etc/iron-proxy/ca/ca.key
transforms:
  - name: allowlist
    config:
      domains:
        {{- toYaml $domains | nindent 8 }}
  - name: secrets
    config:
      secrets:
        {{- range $bindings }}
        - source:
            {{- if eq $source "onepassword" }}
            type: 1password
            secret_ref: "op://${OP_VAULT}/{{ .secret }}/credential"
            ttl: {{ $.Values.ironProxy.secretTtl | quote }}
            {{- else if eq $source "onepassword-connect" }}
            type: 1password_connect
            secret_ref: "op://${OP_VAULT}/{{ .secret }}/credential"
            ttl: {{ $.Values.ironProxy.secretTtl | quote }}
            {{- else }}
            {{- /* iron-proxy's env source reads only type and var (no ttl): the proxy's own
                   environment cannot change while it runs. */}}
            type: env
            var: {{ .secret }}
            {{- end }}
          replace:
            proxy_value: {{ .secret }}
            match_headers: [{{ .header }}]
          rules:
            - host: {{ .host }}
        {{- end }}
log:
  level: {{ .Values.ironProxy.logLevel }}
{{- end -}}
