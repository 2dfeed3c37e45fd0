{{/*
Names and labels shared by every template (the `helm create` conventions).
*/}}

{{/* The chart name, overridable with nameOverride. */}}
{{- define "stowage.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The fully qualified app name: the release name, or release-chart when the release name does not
contain the chart name. Truncated to 63 characters (the DNS label limit of some fields).
*/}}
{{- define "stowage.fullname" -}}
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

{{/* chart-version, as the helm.sh/chart label. */}}
{{- define "stowage.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "stowage.labels" -}}
helm.sh/chart: {{ include "stowage.chart" . }}
{{ include "stowage.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.additionalLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels that select the controller pods (immutable in a Deployment: never add to them). */}}
{{- define "stowage.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stowage.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The ServiceAccount the controller runs as. */}}
{{- define "stowage.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "stowage.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The controller image: repository:tag, the tag defaulting to the chart's appVersion; or repository@digest. */}}
{{- define "stowage.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The environment of the controller container: one variable per `stowage run` flag (the flag's
`env`), from `settings` (and the ports, the release namespace and the pod name). A test renders
the chart and checks this list against `stowage run --help`, so a new flag cannot be missed.
Optional settings whose empty value means "unset" are left out when empty.
*/}}
{{- define "stowage.settingsEnv" -}}
{{- $s := .Values.settings -}}
- name: CLUSTER_NAME
  value: {{ required "settings.clusterName is required: the name of the EKS cluster Stowage manages" $s.clusterName | quote }}
- name: CLUSTER_ENDPOINT
  value: {{ $s.clusterEndpoint | quote }}
- name: CLUSTER_CA_BUNDLE
  value: {{ $s.clusterCaBundle | quote }}
- name: CLUSTER_CIDR
  value: {{ $s.clusterCidr | quote }}
{{- with $s.region }}
- name: AWS_REGION
  value: {{ . | quote }}
{{- end }}
{{- with $s.awsEndpointUrl }}
- name: AWS_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
- name: BATCH_IDLE_DURATION
  value: {{ $s.batchIdleDuration | quote }}
- name: BATCH_MAX_DURATION
  value: {{ $s.batchMaxDuration | quote }}
- name: VM_MEMORY_OVERHEAD_PERCENT
  value: {{ $s.vmMemoryOverheadPercent | toString | quote }}
- name: INITIALIZED_GRACE
  value: {{ $s.initializedGrace | quote }}
- name: MAX_INSTANCE_TYPES
  value: {{ $s.maxInstanceTypes | toString | quote }}
{{- with $s.interruptionQueue }}
- name: INTERRUPTION_QUEUE
  value: {{ . | quote }}
{{- end }}
- name: ACT_ON_REBALANCE_RECOMMENDATION
  value: {{ $s.actOnRebalanceRecommendation | toString | quote }}
- name: INTERRUPTED_OFFERING_TTL
  value: {{ $s.interruptedOfferingTtl | quote }}
- name: SPOT_INTERRUPTION_HALF_LIFE
  value: {{ $s.spotInterruptionHalfLife | quote }}
- name: SPOT_INTERRUPTION_COST_WEIGHT
  value: {{ $s.spotInterruptionCostWeight | toString | quote }}
- name: DISRUPTION_INTERVAL
  value: {{ $s.disruptionInterval | quote }}
- name: DISRUPTION_VALIDATION_DELAY
  value: {{ $s.disruptionValidationDelay | quote }}
- name: DISRUPTION_REPLACEMENT_TIMEOUT
  value: {{ $s.disruptionReplacementTimeout | quote }}
- name: LOG_FORMAT
  value: {{ $s.logFormat | quote }}
- name: LOG_LEVEL
  value: {{ $s.logLevel | quote }}
- name: METRICS_ADDR
  value: {{ printf "0.0.0.0:%v" .Values.metrics.port | quote }}
- name: HEALTH_PROBE_ADDR
  value: {{ printf "0.0.0.0:%v" .Values.healthProbe.port | quote }}
- name: LEADER_ELECT
  value: {{ $s.leaderElect | toString | quote }}
- name: SYSTEM_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: LEASE_NAME
  value: {{ $s.leaseName | quote }}
- name: DRIFT_INTERVAL
  value: {{ $s.driftInterval | quote }}
- name: PROBE_THREADS
  value: {{ $s.probeThreads | toString | quote }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: CLOUD_PROVIDER
  value: {{ $s.cloudProvider | quote }}
- name: KUBE_CLIENT_QPS
  value: {{ $s.kubeClientQps | toString | quote }}
- name: KUBE_CLIENT_BURST
  value: {{ $s.kubeClientBurst | toString | quote }}
- name: KUBE_CLIENT_CREATE_BURST
  value: {{ $s.kubeClientCreateBurst | toString | quote }}
{{- end }}
