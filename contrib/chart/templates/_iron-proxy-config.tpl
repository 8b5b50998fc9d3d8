{{/*
iron-proxy's proxy.yaml, rendered from values: the allowlist of the bound hosts plus
ironProxy.extraAllowedDomains, and one secret binding per enabled harness. Field names follow
iron-proxy's config; iron-proxy ignores unknown keys, so tests/chart checks them by name.
*/}}
{{- define "centaur.ironProxyConfig" -}}
{{- $source := .Values.ironProxy.secretSource }}
{{- $bindings := include "centaur.bindings" . | fromYamlArray }}
{{- $domains := list }}
{{- range $bindings }}{{ $domains = append $domains .host }}{{ end }}
{{- $domains = concat $domains .Values.ironProxy.extraAllowedDomains | uniq -}}
proxy:
  tunnel_listen: ":8080"
  upstream_response_header_timeout: {{ .Values.ironProxy.upstreamResponseHeaderTimeout }}
management:
  listen: ":9092"
  api_key_env: IRON_MANAGEMENT_API_KEY
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
            {{- else if eq $source "onepassword-connect" }}
            type: 1password_connect
            secret_ref: "op://${OP_VAULT}/{{ .secret }}/credential"
            {{- else }}
            type: env
            var: {{ .secret }}
            {{- end }}
            ttl: {{ $.Values.ironProxy.secretTtl }}
          replace:
            proxy_value: {{ .secret }}
            match_headers: [{{ .header }}]
          rules:
            - host: {{ .host }}
        {{- end }}
log:
  level: {{ .Values.ironProxy.logLevel }}
{{- end -}}
