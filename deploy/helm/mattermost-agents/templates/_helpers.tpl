{{- define "agents.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "agents.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Client-side round robin over the headless Service of a component. */}}
{{- define "agents.addr" -}}
{{- $c := index .root.Values.components .name -}}
{{- printf "dns:///%s-%s-headless.%s.svc.cluster.local:%d" (include "agents.fullname" .root) .name .root.Release.Namespace (int $c.port) -}}
{{- end -}}
