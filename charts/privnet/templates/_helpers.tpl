{{/* Names and labels shared by every template. */}}
{{- define "privnet.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "privnet.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "privnet.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "privnet.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "privnet.webhookService" -}}
{{ include "privnet.fullname" . }}-webhook
{{- end -}}

{{- define "privnet.webhookSecret" -}}
{{ .Values.webhook.tls.existingSecret | default (printf "%s-webhook-tls" (include "privnet.fullname" .)) }}
{{- end -}}

{{/* The VNI range as --vni-range takes it (FIRST-LAST; `int` keeps large numbers out of float notation). */}}
{{- define "privnet.vniRange" -}}
{{- if gt (int .Values.vxlan.vniRange.first) (int .Values.vxlan.vniRange.last) -}}
{{- fail "vxlan.vniRange.first must not exceed vxlan.vniRange.last" -}}
{{- end -}}
{{- printf "%d-%d" (int .Values.vxlan.vniRange.first) (int .Values.vxlan.vniRange.last) -}}
{{- end -}}

{{/* Arguments of `privnet cni-install` (both attachment modes). */}}
{{- define "privnet.cniInstallArgs" -}}
- cni-install
- --mode={{ .Values.attachment.mode }}
- --conf-dir=/host/cni-conf
- --bin-dir=/host/cni-bin
- --plugin=/usr/local/bin/privnet-cni
- --agent-socket=/run/privnet/agent.sock
- --log-level={{ .Values.cni.logLevel }}
{{- if eq .Values.attachment.mode "chained" }}
- --pod-interface={{ .Values.attachment.podInterface }}
- --poll-interval-ms={{ int .Values.cni.pollIntervalMs }}
{{- else }}
- --conf-name={{ .Values.cni.confName }}
- --network-name={{ .Values.cni.networkName }}
{{- end }}
{{- end -}}
