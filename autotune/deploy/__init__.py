"""Deployment: Kubernetes manifests checked against the schemas (`manifests`), and a tuned config exported for raw
vLLM (`vllm_export`) or for Kubernetes (`k8s_export`)."""
