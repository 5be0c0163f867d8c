"""A real Kubernetes control plane on this machine: etcd, kube-apiserver and kube-controller-manager built
from Go modules (hack/controlplane/), started the way controller-runtime's envtest starts them, plus a node
agent that plays the kubelet. Used by the tests, `make cluster` and the sandbox."""
