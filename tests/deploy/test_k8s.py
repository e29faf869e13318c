"""deploy/k8s: every manifest validates offline against the Kubernetes API
schemas (kubernetes-validate, strict: unknown fields are errors), and the
manifests agree with each other and with the image (grace period, probes,
selectors, user)."""

import re
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT

K8S = ROOT / "deploy" / "k8s"
MANIFESTS = sorted(K8S.glob("*.yaml"))
# The newest schemas kubernetes-validate carries, and an older release still
# in wide use (autoscaling/v2 and policy/v1 PodDisruptionBudget are GA there).
VERSIONS = ["1.37.0", "1.28.0"]


def load_all():
    docs = {}
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs[doc["kind"]] = doc
    return docs


def test_the_manifests_are_there():
    kinds = set(load_all())
    assert kinds >= {"Deployment", "Service", "HorizontalPodAutoscaler",
                     "PodDisruptionBudget"}, kinds


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_schema_validation(path, version):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for doc in yaml.safe_load_all(path.read_text()):
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.name} ({doc['kind']}) against Kubernetes {version}: {exc}")


def test_validator_rejects_a_broken_deployment():
    """The check above can fail: a wrong type and an unknown field are caught."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    doc = load_all()["Deployment"]
    doc["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, VERSIONS[0], strict=True)
    doc = load_all()["Deployment"]
    doc["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, VERSIONS[0], strict=True)


def test_the_cli_validates_the_directory():
    """What CI or a user runs: kubernetes-validate --strict deploy/k8s/*.yaml."""
    pytest.importorskip("kubernetes_validate")
    proc = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict",
                           *map(str, MANIFESTS)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def container(docs):
    return docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]


def env(c):
    return {e["name"]: e.get("value") for e in c.get("env", [])}


def test_grace_period_covers_prestop_and_graceful_timeout():
    docs = load_all()
    spec = docs["Deployment"]["spec"]["template"]["spec"]
    c = container(docs)
    pre = c["lifecycle"]["preStop"]["exec"]["command"]
    assert pre[0] == "sleep", pre
    graceful = int(env(c)["RINGMASTER_GRACEFUL_TIMEOUT"])
    grace = spec["terminationGracePeriodSeconds"]
    assert grace > int(pre[1]) + graceful, (
        f"terminationGracePeriodSeconds {grace} must exceed preStop {pre[1]} s + "
        f"--graceful-timeout {graceful} s, or the kubelet kills a draining server")


def test_probes_use_the_metrics_endpoints():
    docs = load_all()
    c = container(docs)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    metrics_port = int(env(c)["RINGMASTER_METRICS"].rsplit(":", 1)[1])
    assert ports["metrics"] == metrics_port
    assert ports["http"] == int(env(c)["RINGMASTER_BIND"].rsplit(":", 1)[1])
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["resources"]["limits"]["cpu"] and c["resources"]["limits"]["memory"]


def test_selectors_and_targets_agree():
    docs = load_all()
    dep = docs["Deployment"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    for kind, selector in (("Deployment", dep["spec"]["selector"]["matchLabels"]),
                           ("Service", docs["Service"]["spec"]["selector"]),
                           ("PodDisruptionBudget",
                            docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"])):
        assert selector.items() <= labels.items(), f"{kind} selector {selector} vs {labels}"
    target = docs["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", dep["metadata"]["name"])
    names = {p["name"] for p in container(docs)["ports"]}
    for p in docs["Service"]["spec"]["ports"]:
        assert p["targetPort"] in names, p


def test_pod_user_is_the_image_user():
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    uid = re.search(r"useradd --uid (\d+)", dockerfile).group(1)
    sc = load_all()["Deployment"]["spec"]["template"]["spec"]["securityContext"]
    assert str(sc["runAsUser"]) == uid and sc["runAsNonRoot"] is True
