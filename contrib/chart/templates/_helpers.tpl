{{/* Base name of every object: <release>-<chart>, e.g. centaur-centaur. */}}
{{- define "centaur.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "centaur.apiName" -}}{{ include "centaur.fullname" . }}-api{{- end -}}
{{- define "centaur.dispatcherName" -}}{{ include "centaur.fullname" . }}-dispatcher{{- end -}}
{{- define "centaur.ironProxyName" -}}{{ include "centaur.fullname" . }}-iron-proxy{{- end -}}
{{- define "centaur.onepasswordConnectName" -}}{{ include "centaur.fullname" . }}-onepassword-connect{{- end -}}

{{/* Labels every object carries; pass (dict "root" $ "component" "api"). */}}
{{- define "centaur.labels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: centaur
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{/* Selector labels; pass (dict "root" $ "component" "api"). */}}
{{- define "centaur.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* One env var read from the infra Secret; pass (dict "root" $ "name" "DATABASE_URL" "optional" false). */}}
{{- define "centaur.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .root.Values.secretManager.existingSecretName }}
      key: {{ printf "%s%s" .root.Values.secretManager.envPrefix .name }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end -}}

{{/* The mount of the Postgres CA bundle (database.caBundle), if one is set. */}}
{{- define "centaur.databaseCaMount" -}}
{{- if .Values.database.caBundle.configMap }}
- name: database-ca
  mountPath: /etc/centaur/database-ca
  readOnly: true
{{- end }}
{{- end -}}

{{/* The volume of the Postgres CA bundle (database.caBundle), if one is set. */}}
{{- define "centaur.databaseCaVolume" -}}
{{- if .Values.database.caBundle.configMap }}
- name: database-ca
  configMap:
    name: {{ .Values.database.caBundle.configMap }}
    items:
      - key: {{ .Values.database.caBundle.key }}
        path: {{ .Values.database.caBundle.key }}
{{- end }}
{{- end -}}

{{/* URL sandboxes and the dispatcher use to reach the API. */}}
{{- define "centaur.apiUrl" -}}
{{- if .Values.sandbox.apiUrl -}}
{{ .Values.sandbox.apiUrl }}
{{- else -}}
http://{{ include "centaur.apiName" . }}.{{ .Release.Namespace }}.svc:8000
{{- end -}}
{{- end -}}

{{/* Host part of the API URL, for NO_PROXY. */}}
{{- define "centaur.apiHost" -}}
{{- include "centaur.apiUrl" . | trimPrefix "http://" | trimPrefix "https://" | regexReplaceAll ":[0-9]+.*$" "" | regexReplaceAll "/.*$" "" -}}
{{- end -}}

{{/* iron-proxy's CONNECT listener URL, what sandboxes set as HTTP(S)_PROXY. */}}
{{- define "centaur.proxyUrl" -}}
http://{{ include "centaur.ironProxyName" . }}.{{ .Release.Namespace }}.svc:8080
{{- end -}}

{{/*
Credential bindings iron-proxy holds, one per enabled harness (claude-code and pi-mono share
ANTHROPIC_API_KEY), and GITHUB_TOKEN on github.com and api.github.com when a repository is
configured (sandbox.repo or sandbox.reposAllowed). Rendered as a YAML list of
{secret, host, header}, one per (secret, host).
*/}}
{{- define "centaur.bindings" -}}
{{- $table := dict
    "codex" (dict "secret" "OPENAI_API_KEY" "host" "api.openai.com" "header" "Authorization")
    "amp" (dict "secret" "AMP_API_KEY" "host" "ampcode.com" "header" "Authorization")
    "claude-code" (dict "secret" "ANTHROPIC_API_KEY" "host" "api.anthropic.com" "header" "X-Api-Key")
    "pi-mono" (dict "secret" "ANTHROPIC_API_KEY" "host" "api.anthropic.com" "header" "X-Api-Key") -}}
{{- $seen := dict -}}
{{- $bindings := list -}}
{{- range .Values.harnesses.enabled -}}
{{- $binding := get $table . -}}
{{- if not $binding -}}
{{- fail (printf "harnesses.enabled: unknown harness %q (codex, amp, claude-code, pi-mono)" .) -}}
{{- end -}}
{{- $key := printf "%s@%s" $binding.secret $binding.host -}}
{{- if not (hasKey $seen $key) -}}
{{- $_ := set $seen $key true -}}
{{- $bindings = append $bindings $binding -}}
{{- end -}}
{{- end -}}
{{- if or .Values.sandbox.repo .Values.sandbox.reposAllowed -}}
{{- range list "github.com" "api.github.com" -}}
{{- $bindings = append $bindings (dict "secret" "GITHUB_TOKEN" "host" . "header" "Authorization") -}}
{{- end -}}
{{- end -}}
{{- toYaml $bindings -}}
{{- end -}}

{{/* Comma-separated names of the bound secrets, for the API's /health/tools. */}}
{{- define "centaur.boundSecretNames" -}}
{{- $names := list -}}
{{- range (include "centaur.bindings" . | fromYamlArray) -}}
{{- $names = append $names .secret -}}
{{- end -}}
{{- join "," ($names | uniq) -}}
{{- end -}}

{{- define "centaur.image" -}}
{{- printf "%s:%s" .repository (toString .tag) -}}
{{- end -}}

{{/* Security context of every control-plane container. */}}
{{- define "centaur.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Env both the API and the dispatcher read. */}}
{{- define "centaur.commonEnv" -}}
{{ include "centaur.secretEnv" (dict "root" . "name" "DATABASE_URL") }}
{{ include "centaur.secretEnv" (dict "root" . "name" "SANDBOX_SIGNING_KEY") }}
{{ include "centaur.secretEnv" (dict "root" . "name" "SLACK_BOT_TOKEN" "optional" true) }}
{{ include "centaur.secretEnv" (dict "root" . "name" "SLACK_SIGNING_SECRET" "optional" true) }}
- name: QUEUE_BACKEND
  value: {{ .Values.dispatcher.queueBackend | quote }}
{{- if eq .Values.dispatcher.queueBackend "sqs" }}
- name: SQS_QUEUE_URL
  value: {{ required "dispatcher.sqsQueueUrl is required when dispatcher.queueBackend is sqs" .Values.dispatcher.sqsQueueUrl | quote }}
{{- end }}
{{- with .Values.dispatcher.awsRegion }}
- name: AWS_REGION
  value: {{ . | quote }}
{{- end }}
- name: SANDBOX_BACKEND
  value: kubernetes
- name: CENTAUR_DEFAULT_HARNESS
  value: {{ .Values.harnesses.default | quote }}
- name: CENTAUR_API_URL
  value: {{ include "centaur.apiUrl" . | quote }}
- name: WARM_POOL_ENABLED
  value: {{ .Values.api.warmPoolEnabled | quote }}
- name: WARM_POOL_SIZE
  value: {{ .Values.warmPool.size | quote }}
- name: WARM_POOL_HARNESS
  value: {{ .Values.warmPool.harness | quote }}
- name: RUST_LOG
  value: {{ .Values.logLevel | quote }}
- name: LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
{{- with .Values.slack.apiUrl }}
- name: SLACK_API_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.slack.botUserId }}
- name: SLACK_BOT_USER_ID
  value: {{ . | quote }}
{{- end }}
{{- with .Values.slack.allowedTeams }}
- name: SLACK_ALLOWED_TEAMS
  value: {{ join "," . | quote }}
{{- end }}
{{- with .Values.slack.allowedBots }}
- name: SLACK_ALLOWED_BOTS
  value: {{ join "," . | quote }}
{{- end }}
{{- end -}}

{{/* The thread workspace settings (AGENT_REPO, AGENT_REPOS_ALLOWED) the API and the dispatcher read. */}}
{{- define "centaur.workspaceEnv" -}}
{{- with .Values.sandbox.repo }}
- name: AGENT_REPO
  value: {{ . | quote }}
{{- end }}
{{- with .Values.sandbox.reposAllowed }}
- name: AGENT_REPOS_ALLOWED
  value: {{ join "," . | quote }}
{{- end }}
{{- end -}}
