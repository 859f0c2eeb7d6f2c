{{/* Names, labels and images shared by the templates. */}}

{{- define "buoy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "buoy.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "buoy.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "buoy.labels" -}}
{{ include "buoy.commonLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of every object, but app.kubernetes.io/instance. */}}
{{- define "buoy.commonLabels" -}}
helm.sh/chart: {{ include "buoy.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: buoy
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The metadata.annotations block of every object (empty when there are none). */}}
{{- define "buoy.annotations" -}}
{{- $all := merge (dict) (.extra | default dict) (.root.Values.commonAnnotations | default dict) -}}
{{- with $all -}}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "buoy.operator.name" -}}
{{- printf "%s-operator" (include "buoy.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "buoy.agent.name" -}}
{{- printf "%s-agent" (include "buoy.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "buoy.operator.selectorLabels" -}}
app.kubernetes.io/name: buoy-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "buoy.operator.labels" -}}
{{ include "buoy.commonLabels" . }}
{{ include "buoy.operator.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* The operator labels agent pods with app.kubernetes.io/name: buoy-agent. */}}
{{- define "buoy.agent.selectorLabels" -}}
app.kubernetes.io/name: buoy-agent
{{- end -}}

{{- define "buoy.agent.labels" -}}
{{ include "buoy.labels" . }}
app.kubernetes.io/name: buoy-agent
app.kubernetes.io/component: agent
{{- end -}}

{{- define "buoy.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (include "buoy.operator.name" .) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* registry/repository[:tag][@digest] of an image block; tag defaults to the appVersion. */}}
{{- define "buoy.image" -}}
{{- $img := .image -}}
{{- $repo := ternary (printf "%s/%s" $img.registry $img.repository) $img.repository (ne ($img.registry | default "") "") -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $repo $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .root.Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{- define "buoy.leaseNamespace" -}}
{{- default .Release.Namespace .Values.operator.leaderElection.namespace -}}
{{- end -}}

{{/* The agent's ResourceRequirements as JSON for the operator, without empty values. */}}
{{- define "buoy.agentResources" -}}
{{- include "buoy.resourcesJson" .Values.agent.resources -}}
{{- end -}}

{{/* A resources value (requests and limits) as the JSON of a ResourceRequirements, without
empty values. */}}
{{- define "buoy.resourcesJson" -}}
{{- $res := dict -}}
{{- range $kind, $m := . -}}
{{- $kept := dict -}}
{{- range $k, $v := $m -}}
{{- if $v -}}{{- $_ := set $kept $k $v -}}{{- end -}}
{{- end -}}
{{- if $kept -}}{{- $_ := set $res $kind $kept -}}{{- end -}}
{{- end -}}
{{- $res | toJson -}}
{{- end -}}
