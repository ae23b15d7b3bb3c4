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

{{/* The image, pinned by digest when image.digest is set: a tag can be moved, a digest cannot. */}}
{{- define "podid.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
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

{{/*
The CredentialProviderConfig of podid-credential-provider. tokenAttributes:
- serviceAccountTokenAudience pods.eks.amazonaws.com: the audience podid
  agent and server accept, the one the webhook projects into pods;
- cacheType ServiceAccount: the answer is the association's, which is per
  ServiceAccount, so pods of one ServiceAccount share it (Token would run
  the plugin for every pod, since every pod has its own token);
- requireServiceAccount true: a pod without one (a static pod) never gets
  another identity; the plugin is not run for it.
*/}}
{{- define "podid.credentialProviderConfig" -}}
{{- $cp := .Values.credentialProvider -}}
apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: podid-credential-provider
    apiVersion: credentialprovider.kubelet.k8s.io/v1
    matchImages:
      {{- range concat $cp.ecrImages $cp.jfrogHosts }}
      - {{ . | quote }}
      {{- end }}
    # Only for an answer without cacheDuration; podid's always carry one.
    defaultCacheDuration: 10m
    args:
      - --agent-url={{ .Values.webhook.credentialsURI }}
      - --timeout={{ $cp.timeout }}
      {{- range $cp.jfrogHosts }}
      - --jfrog-host={{ . }}
      {{- end }}
    {{- with $cp.env }}
    env:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    tokenAttributes:
      serviceAccountTokenAudience: pods.eks.amazonaws.com
      cacheType: ServiceAccount
      requireServiceAccount: true
{{- end -}}

{{/*
"true" when the chart binds podid.io/requested-by to the creator of each
PodIdentityCheck (a ValidatingAdmissionPolicy, Kubernetes 1.30+): only
then does podid server believe the name (--check-requester-bound).
*/}}
{{- define "podid.checkRequesterBound" -}}
{{- if and .Values.doctor.bindRequester (semverCompare ">=1.30.0-0" .Capabilities.KubeVersion.Version) }}true{{ end }}
{{- end -}}

{{- /* podid's iam:PassRole policies (passRole.enabled) need
ValidatingAdmissionPolicy v1, served from Kubernetes 1.30: on an older
cluster, refuse to install rather than install without the check. */ -}}
{{- define "podid.passRole" -}}
{{- if .Values.passRole.enabled -}}
{{- if not (semverCompare ">=1.30.0-0" .Capabilities.KubeVersion.Version) -}}
{{- fail (printf "passRole.enabled needs Kubernetes 1.30 or later (ValidatingAdmissionPolicy v1), and this cluster is %s. Upgrade it, or set passRole.enabled=false: RBAC on associations is then all that bounds which IAM roles their editors hand out (docs/roles.md)" .Capabilities.KubeVersion.Version) -}}
{{- end -}}
true
{{- end -}}
{{- end -}}

{{- /* The agent removes its startup taint (agent.startupTaint): "true" when on. The
       RBAC it needs (patch on nodes) is bounded by a ValidatingAdmissionPolicy,
       so it needs 1.30 too. */ -}}
{{- define "podid.startupTaint" -}}
{{- if and .Values.agent.enabled .Values.agent.startupTaint.enabled -}}
{{- if not (semverCompare ">=1.30.0-0" .Capabilities.KubeVersion.Version) -}}
{{- fail (printf "agent.startupTaint.enabled needs Kubernetes 1.30 or later (the ValidatingAdmissionPolicy that keeps each agent to its own node), and this cluster is %s. Upgrade it, or set agent.startupTaint.enabled=false" .Capabilities.KubeVersion.Version) -}}
{{- end -}}
true
{{- end -}}
{{- end -}}

{{- /* The rotator's ServiceAccount: rotator.serviceAccount.name, as JFrog's chart names its operator's. */ -}}
{{- define "podid.rotatorServiceAccount" -}}{{ .Values.rotator.serviceAccount.name | default "podid-rotator" }}{{- end -}}
