// The third-party APIs modeldeploy writes objects for, pinned at the versions docs/install.md names as
// supported. Nothing here is compiled: tests install the CRD manifests these modules ship (as envtest
// setups do), so a template that writes a field those CRDs do not know is refused by the real API server.
// A module of its own, so these requirements never move the control plane's dependency versions.
module modeldeploy.io/hack/controlplane/crds

go 1.26.0

require (
	github.com/kedacore/keda/v2 v2.21.0
	github.com/prometheus-operator/prometheus-operator v0.85.0
	sigs.k8s.io/gateway-api v1.6.3
)
