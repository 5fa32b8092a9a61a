#!/usr/bin/env bash
# End-to-end on a real cluster (kind): install the chart, deploy two
# projects, check names, environment and isolation from inside pods.
#
# Needs: docker, kind, kubectl, helm (v3.14+), network access to pull
# Multus and busybox. Not run in CI (no Docker there); see docs/OPERATOR.md.
#
#   e2e/kind/run.sh            # build, create cluster, test, delete cluster
#   KEEP=1 e2e/kind/run.sh     # keep the cluster for inspection
set -euo pipefail
cd "$(dirname "$0")/../.."

CLUSTER=${CLUSTER:-privnet-e2e}
IMAGE=${IMAGE:-privnet:e2e}
NS=privnet-system
MULTUS=${MULTUS:-https://raw.githubusercontent.com/k8snetworkplumbingwg/multus-cni/v4.1.4/deployments/multus-daemonset-thick.yml}
DOMAIN=private-network.internal

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || { echo "e2e/kind: $tool is required" >&2; exit 2; }
done

cleanup() { [[ "${KEEP:-0}" == 1 ]] || kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true; }
trap cleanup EXIT
fail() { echo "e2e/kind: FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }

step "cluster"
kind create cluster --name "$CLUSTER" --wait 120s --config - <<'YAML'
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes: [{role: control-plane}, {role: worker}, {role: worker}]
YAML

step "image"
docker build -f docker/Dockerfile -t "$IMAGE" .
kind load docker-image "$IMAGE" --name "$CLUSTER"

# ATTACH=multus (default: Multus installed, the controller keeps a
# NetworkAttachmentDefinition per project namespace and the webhook adds the
# networks annotation) or ATTACH=chained (privnet chained into kindnet's
# conflist by the agent's cni-chain sidecar; no Multus).
ATTACH=${ATTACH:-multus}
step "privnet ($ATTACH)"
if [[ "$ATTACH" == multus ]]; then
  kubectl apply -f "$MULTUS"
  kubectl -n kube-system rollout status ds/kube-multus-ds --timeout=180s
fi
helm install privnet charts/privnet -n "$NS" --create-namespace \
  --set image.repository="${IMAGE%%:*}" --set image.tag="${IMAGE##*:}" --set image.pullPolicy=Never \
  --set wireguard.backend=userspace --set attachment.mode="$ATTACH"
kubectl -n "$NS" rollout status deploy/privnet-controller --timeout=180s
kubectl -n "$NS" rollout status ds/privnet-agent --timeout=180s
for ns in alpha beta; do kubectl create namespace "$ns"; done

step "projects"
for p in alpha beta; do
  kubectl apply -f - <<YAML
apiVersion: privnet.io/v1alpha1
kind: Project
metadata: {name: $p}
spec: {namespaces: [$p]}
YAML
done
for p in alpha beta; do
  kubectl wait "project/$p" --for=condition=Ready --timeout=120s
done
PN_ALPHA=$(kubectl get project alpha -o jsonpath='{.status.networkId}')
PN_BETA=$(kubectl get project beta -o jsonpath='{.status.networkId}')
[[ "$PN_ALPHA" == pn-* && "$PN_BETA" == pn-* && "$PN_ALPHA" != "$PN_BETA" ]] || fail "network ids: $PN_ALPHA $PN_BETA"

step "workloads"
for p in alpha beta; do
  kubectl apply -n "$p" -f - <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web, privnet.io/application: shop, privnet.io/process-type: web}
    spec:
      containers:
        - {name: main, image: busybox:1.36, command: [sleep, "3600"]}
YAML
  kubectl -n "$p" rollout status deploy/web --timeout=180s
done
pod() { kubectl -n "$1" get pods -l app=web -o jsonpath="{.items[$2].metadata.name}"; }
in_pod() { local ns=$1 p=$2; shift 2; kubectl -n "$ns" exec "$p" -- "$@"; }
A0=$(pod alpha 0); A1=$(pod alpha 1); B0=$(pod beta 0)

step "environment"
host=$(in_pod alpha "$A0" sh -c 'echo $SCALINGO_PRIVATE_HOSTNAME')
[[ "$host" =~ ^[12]\.web\.shop\.$PN_ALPHA\.$DOMAIN$ ]] || fail "SCALINGO_PRIVATE_HOSTNAME=$host"
[[ $(in_pod alpha "$A0" sh -c 'echo $SCALINGO_PRIVATE_NETWORK_ID') == "$PN_ALPHA" ]] || fail "network id variable"

step "dns"
in_pod alpha "$A0" nslookup "shop.$PN_ALPHA.$DOMAIN" | tee /dev/stderr | grep -q "10.240." || fail "app name does not resolve in alpha"
in_pod alpha "$A0" nslookup "1.web.shop.$PN_ALPHA.$DOMAIN" >/dev/null || fail "1.web does not resolve"
if in_pod beta "$B0" nslookup "shop.$PN_ALPHA.$DOMAIN" 2>/dev/null | grep -q "10.240."; then fail "alpha's names resolve from beta"; fi

step "isolation"
A1_IP=$(in_pod alpha "$A1" ip -4 -o addr show eth1 | awk '{print $4}' | cut -d/ -f1)
in_pod alpha "$A0" ping -c 2 -W 2 "$A1_IP" >/dev/null || fail "alpha pods cannot reach each other privately"
if in_pod beta "$B0" ping -c 2 -W 2 "$A1_IP" >/dev/null 2>&1; then
  # Overlapping subnets: beta may own the same address in its own network;
  # then it must answer from beta's network, never alpha's pod.
  B_IPS=$(kubectl -n beta get privateendpoints -o jsonpath='{.items[*].spec.ip}')
  [[ " $B_IPS " == *" $A1_IP "* ]] || fail "beta reached alpha's $A1_IP"
fi
echo "e2e/kind: OK (alpha=$PN_ALPHA beta=$PN_BETA)"
