#!/usr/bin/env bash
# Apply deploy/kubernetes with IMAGE:TAG-cpu (API) and IMAGE:TAG-cuda (GPU workers), wait
# for both rollouts and check /readyz through the Service. Used by .github/workflows/deploy.yml
# and by hand (docs/runbook.md):
#   deploy/kubernetes/deploy.sh ghcr.io/OWNER/hndsr-tiles 0.2.0
set -euo pipefail
image=${1:?usage: deploy.sh IMAGE TAG}
tag=${2:?usage: deploy.sh IMAGE TAG}
ns=${NAMESPACE:-hndsr-tiles}
base=$(cd "$(dirname "$0")" && pwd)
overlay=$(mktemp -d "$base/.deploy.XXXXXX")
trap 'rm -rf "$overlay"' EXIT
cat > "$overlay/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ..
images:
  - name: hndsr-tiles
    newName: ${image}
    newTag: ${tag}-cpu
  - name: hndsr-tiles-cuda
    newName: ${image}
    newTag: ${tag}-cuda
YAML
kubectl apply -k "$overlay"
kubectl -n "$ns" annotate deployment/hndsr-api deployment/hndsr-worker --overwrite \
  "kubernetes.io/change-cause=deploy ${image} ${tag}"
kubectl -n "$ns" rollout status deployment/hndsr-api --timeout=10m
kubectl -n "$ns" rollout status deployment/hndsr-worker --timeout=15m
kubectl -n "$ns" run "readyz-check-$RANDOM" --rm -i --restart=Never --quiet \
  --image=curlimages/curl:8.10.1 -- curl -fsS --max-time 10 http://hndsr-api/readyz
