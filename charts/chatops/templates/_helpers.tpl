{{- define "chatops.name" -}}chatops{{- end -}}

{{- define "chatops.fullname" -}}
{{- if contains "chatops" .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else -}}{{ printf "%s-chatops" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "chatops.labels" -}}
app.kubernetes.io/name: chatops
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "chatops.selector" -}}
app.kubernetes.io/name: chatops
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "chatops.serviceAccount" -}}
{{- default (include "chatops.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* Namespaces where Secrets may be read: explicit, else watched, else the release's. */}}
{{- define "chatops.secretNamespaces" -}}
{{- $ns := .Values.secretNamespaces | default .Values.watchNamespaces | default (list .Release.Namespace) -}}
{{- toJson $ns -}}
{{- end -}}

{{/*
Kubernetes >= 1.30 (CEL validation rules in the CRDs), checked only against a real
cluster: `lookup` answers only when helm talks to one (install, upgrade, --dry-run=server),
so `helm template` renders for any target without --kube-version.
*/}}
{{- define "chatops.requireKubernetes" -}}
{{- if lookup "v1" "Namespace" "" "kube-system" -}}
{{- if semverCompare "<1.30.0-0" .Capabilities.KubeVersion.Version -}}
{{- fail (printf "chatops needs Kubernetes 1.30 or newer (its CRDs use CEL validation rules); this cluster is %s" .Capabilities.KubeVersion.Version) -}}
{{- end -}}
{{- end -}}
{{- end -}}
