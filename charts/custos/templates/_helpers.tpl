{{- define "custos.fullname" -}}
{{- printf "%s" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The manager's namespace: namespace.name, else the release's. */}}
{{- define "custos.namespace" -}}
{{- default .Release.Namespace .Values.namespace.name -}}
{{- end -}}

{{- define "custos.selectorLabels" -}}
app.kubernetes.io/name: custos
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "custos.labels" -}}
{{ include "custos.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "custos.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{- define "custos.exportClaim" -}}
{{- default (printf "%s-exports" (include "custos.fullname" .)) .Values.export.persistence.existingClaim -}}
{{- end -}}

{{/* A BackupLocation from defaultRetentionPolicy.primary or .offsite: (dict "loc" … "root" $). */}}
{{- define "custos.backupLocation" -}}
{{- $loc := .loc -}}
apiVersion: custos.io/v1alpha1
kind: BackupLocation
metadata:
  name: {{ $loc.name }}
  labels: {{- include "custos.labels" .root | nindent 4 }}
  annotations:
    helm.sh/resource-policy: keep
spec:
  url: {{ required (printf "defaultRetentionPolicy: BackupLocation %s needs a url" $loc.name) $loc.url | quote }}
  jurisdiction: {{ required (printf "defaultRetentionPolicy: BackupLocation %s needs a jurisdiction" $loc.name) $loc.jurisdiction | quote }}
  {{- with $loc.region }}
  region: {{ . | quote }}
  {{- end }}
  {{- with $loc.credentialsSecretName }}
  credentialsSecretRef:
    name: {{ . }}
  {{- end }}
  {{- with $loc.caSecretName }}
  caSecretRef:
    name: {{ . }}
  {{- end }}
{{- end -}}
