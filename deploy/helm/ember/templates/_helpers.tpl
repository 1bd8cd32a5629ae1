{{/*
Named templates of the ember chart. The templates use a small subset of Helm's functions on
purpose: tests/helm_render.py renders the chart offline exactly as Helm does and refuses
everything else, so keep to what it implements (see its docstring).
*/}}

{{/* The chart's name, at most 63 characters (a DNS label). */}}
{{- define "ember.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The objects' name: the release name, followed by the chart's unless it contains it. */}}
{{- define "ember.fullname" -}}
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

{{- define "ember.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ember.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ember.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ember.labels" -}}
helm.sh/chart: {{ include "ember.chart" . }}
{{ include "ember.selectorLabels" . }}
app.kubernetes.io/version: {{ default .Chart.AppVersion .Values.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "ember.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Checks of values that Kubernetes would accept but that cannot work; included by the
Deployment, renders nothing or stops the install with a message.
*/}}
{{- define "ember.validate" -}}
{{- $drain := int .Values.config.drainTimeout }}
{{- $preStop := int .Values.preStopSleepSeconds }}
{{- $grace := int .Values.terminationGracePeriodSeconds }}
{{- $needed := add $preStop $drain 15 }}
{{- if lt $grace $needed }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be at least preStopSleepSeconds + config.drainTimeout + 15 (%d): the kubelet would kill Ember while it drains" $grace $needed) }}
{{- end }}
{{- if not (or (eq .Values.modelStore.source "pvc") (eq .Values.modelStore.source "download")) }}
{{- fail (printf "modelStore.source must be pvc or download, not %q" .Values.modelStore.source) }}
{{- end }}
{{- if and (not .Values.config.disableTokenAuthorization) (not .Values.config.tokenAuthExemptHealth) }}
{{- fail "config.tokenAuthExemptHealth is false while token authorization is on: the kubelet's probes carry no token and would never pass" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas is greater than autoscaling.maxReplicas" }}
{{- end }}
{{- if .Values.podDisruptionBudget.enabled }}
{{- if and .Values.podDisruptionBudget.minAvailable .Values.podDisruptionBudget.maxUnavailable }}
{{- fail "podDisruptionBudget: give minAvailable or maxUnavailable, not both" }}
{{- end }}
{{- if not (or .Values.podDisruptionBudget.minAvailable .Values.podDisruptionBudget.maxUnavailable) }}
{{- fail "podDisruptionBudget: give minAvailable or maxUnavailable" }}
{{- end }}
{{- end }}
{{- end }}
