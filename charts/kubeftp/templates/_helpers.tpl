{{- define "kubeftp.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kubeftp.selectorLabels" -}}
app.kubernetes.io/name: kubeftp-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kubeftp.labels" -}}
{{ include "kubeftp.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kubeftp.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kubeftp.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- /* Non-empty if the cluster enforces OwnerReferencesPermissionEnforcement,
so the operator needs delete on what it changes the owner references of:
see ownerReferencesPermissionEnforcement in values.yaml. */ -}}
{{- define "kubeftp.ownerReferencesEnforced" -}}
{{- $enforced := .Values.ownerReferencesPermissionEnforcement -}}
{{- if eq (toString $enforced) "auto" -}}
{{- if .Capabilities.APIVersions.Has "security.openshift.io/v1" }}true{{ end -}}
{{- else if $enforced }}true{{ end -}}
{{- end -}}
