{{/* The chart's names and labels. */}}
{{- define "podid.name" -}}podid{{- end -}}

{{- define "podid.labels" -}}
app.kubernetes.io/name: podid
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "podid.serverSelector" -}}
app.kubernetes.io/name: podid
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end -}}

{{- define "podid.rotatorSelector" -}}
app.kubernetes.io/name: podid
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: rotator
{{- end -}}

{{- define "podid.agentSelector" -}}
app.kubernetes.io/name: podid
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: agent
{{- end -}}

{{- define "podid.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The Service both the webhook and the agents call, and its DNS names. */}}
{{- define "podid.service" -}}podid{{- end -}}
{{- define "podid.serviceHost" -}}{{ include "podid.service" . }}.{{ .Release.Namespace }}.svc{{- end -}}

{{- define "podid.tlsSecret" -}}podid-tls{{- end -}}

{{- define "podid.required" -}}
{{- $_ := required "clusterName is required: the cluster's name in association ARNs and session tags" .Values.clusterName -}}
{{- $_ := required "accountId is required: the 12-digit AWS account ID in association ARNs" .Values.accountId -}}
{{- $_ := required "region is required: the AWS region in association ARNs" .Values.region -}}
{{- end -}}
