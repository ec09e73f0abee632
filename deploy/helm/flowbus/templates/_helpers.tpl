{{- define "flowbus.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 55 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 55 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "flowbus.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* selector labels of one component: (dict "ctx" $ "component" "agent") */}}
{{- define "flowbus.selector" -}}
app.kubernetes.io/name: {{ .ctx.Chart.Name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "flowbus.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "flowbus.busArgs" -}}
- --bus={{ required "bus.url is required" .Values.bus.url }}
{{- if hasPrefix "kafka://" .Values.bus.url }}
- --kafka-topic={{ .Values.bus.kafka.topic }}
{{- else if hasPrefix "nats://" .Values.bus.url }}
- --nats-partitions={{ .Values.bus.natsPartitions }}
{{- else }}
{{- fail "bus.url must start with nats:// or kafka://" }}
{{- end }}
{{- end -}}
