{{/*
Hand-written; the other templates are generated from deploy/base by
scripts/generate-helm-chart.sh.
*/}}

{{/* The namespace every object goes to. */}}
{{- define "certflow.namespace" -}}
{{- required "namespace must be set" .Values.namespace -}}
{{- end -}}

{{/* The chart label: name-version. */}}
{{- define "certflow.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}
