{{/* Chart name, truncated to 63 characters (DNS label). */}}
{{- define "kserve-keda-webhook.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: release name + chart name, or the release name alone when it already contains the
chart name. Truncated to 63 characters because some Kubernetes name fields are limited to that.
*/}}
{{- define "kserve-keda-webhook.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "kserve-keda-webhook.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kserve-keda-webhook.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kserve-keda-webhook.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kserve-keda-webhook.labels" -}}
helm.sh/chart: {{ include "kserve-keda-webhook.chart" . }}
{{ include "kserve-keda-webhook.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/component: admission-webhook
app.kubernetes.io/part-of: kserve-keda-webhook
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "kserve-keda-webhook.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kserve-keda-webhook.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Name of the MutatingWebhookConfiguration (cluster-scoped, so it carries the release name). */}}
{{- define "kserve-keda-webhook.webhookConfigName" -}}
{{- include "kserve-keda-webhook.fullname" . }}
{{- end }}

{{/* Secret holding the serving certificate, per certs.mode. */}}
{{- define "kserve-keda-webhook.tlsSecretName" -}}
{{- if eq .Values.certs.mode "provided" }}
{{- required "certs.provided.secretName is required when certs.mode=provided: name an existing kubernetes.io/tls Secret in the release namespace" .Values.certs.provided.secretName }}
{{- else if eq .Values.certs.mode "selfManaged" }}
{{- default (printf "%s-tls" (include "kserve-keda-webhook.fullname" .)) .Values.certs.selfManaged.secretName }}
{{- else }}
{{- printf "%s-tls" (include "kserve-keda-webhook.fullname" .) }}
{{- end }}
{{- end }}

{{- define "kserve-keda-webhook.certificateName" -}}
{{- printf "%s-serving-cert" (include "kserve-keda-webhook.fullname" .) }}
{{- end }}

{{- define "kserve-keda-webhook.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Policy file content; empty when no policy is set. */}}
{{- define "kserve-keda-webhook.policy" -}}
{{- if .Values.policy }}
{{- toYaml .Values.policy }}
{{- end }}
{{- end }}

{{- define "kserve-keda-webhook.kubectlImage" -}}
{{- printf "%s:%s" .Values.kubectl.image.repository .Values.kubectl.image.tag }}
{{- end }}

{{/* Restricted-profile security settings of the hook and test containers. */}}
{{- define "kserve-keda-webhook.hookSecurity" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  readOnlyRootFilesystem: true
  allowPrivilegeEscalation: false
  capabilities:
    drop:
      - ALL
  seccompProfile:
    type: RuntimeDefault
resources:
  requests:
    cpu: 10m
    memory: 32Mi
  limits:
    memory: 64Mi
{{- end }}
