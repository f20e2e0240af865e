{{- define "agents.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "agents.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selects the pods of one component: (dict "root" $ "name" $name). */}}
{{- define "agents.selector" -}}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "agents.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "agents.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding a credential: the existing one, or the chart's own when a value was given. */}}
{{- define "agents.secretName" -}}
{{- $section := index .root.Values .key -}}
{{- if (index $section .valueKey) -}}
{{- printf "%s-%s" (include "agents.fullname" .root) .key | lower -}}
{{- else -}}
{{- $section.existingSecret -}}
{{- end -}}
{{- end -}}

{{/* Client-side round robin over the headless Service of a component. */}}
{{- define "agents.addr" -}}
{{- $c := index .root.Values.components .name -}}
{{- printf "dns:///%s-%s-headless.%s.svc.cluster.local:%d" (include "agents.fullname" .root) .name .root.Release.Namespace (int $c.port) -}}
{{- end -}}

{{/* What every process of the release needs (the pods, migrations, reindex workers): database, Mattermost, license. */}}
{{- define "agents.commonEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "agents.secretName" (dict "root" . "key" "database" "valueKey" "url") }}
      key: {{ .Values.database.urlKey }}
- name: AGENTS_SERVICE_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "agents.secretName" (dict "root" . "key" "serviceToken" "valueKey" "token") }}
      key: {{ .Values.serviceToken.tokenKey }}
- name: AGENTS_MATTERMOST_URL
  value: {{ .Values.mattermost.url | quote }}
- name: AGENTS_MATTERMOST_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "agents.secretName" (dict "root" . "key" "mattermost" "valueKey" "token") }}
      key: {{ .Values.mattermost.tokenKey }}
- name: AGENTS_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: AGENTS_INDEX_LICENSE
  value: {{ .Values.license | quote }}
{{- end -}}

{{/* "true" when ServiceMonitors are rendered: forced on, or "auto" and the Prometheus Operator is installed. */}}
{{- define "agents.serviceMonitor" -}}
{{- $mode := toString .Values.metrics.serviceMonitor -}}
{{- if and .Values.metrics.enabled (or (eq $mode "true") (and (eq $mode "auto") (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor"))) -}}
true
{{- end -}}
{{- end -}}
