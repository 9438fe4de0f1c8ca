//! `k8s/`: the system on Kubernetes (1.30+).
//!
//! A namespace named after the system; a ConfigMap holding `system.json`;
//! per service a Deployment and a ClusterIP Service named by its host label
//! (so `--peers dns` reaches `host:port` inside the namespace), in
//! `k8s/services/HOST.yaml`; and `load-job.yaml`, a Job running `palette
//! load`, kept apart so applying the services does not start the load.
//!
//! Pods run as the image's non-root user with a read-only root file
//! system; `/etc/palette` is an `emptyDir` (where the span file is written)
//! with `system.json` mounted into it from the ConfigMap. A system whose
//! `system.json` is too big for a ConfigMap (1 MiB; a few hundred
//! services) is [`Source::Baked`] into an image instead (`Dockerfile.system`),
//! and an init container copies it into the `emptyDir`.

use std::fmt::Write as _;

use palette_spec::config::{ServiceConfig, SystemConfig};

use crate::compose::{CONTAINER_DIR, CONTAINER_SYSTEM, load_args, serve_args};
use crate::generate::GenerateOptions;
use crate::yaml::{block, list, q};

/// The image's non-root user and group (the Dockerfile creates them).
pub const UID: u32 = 10001;

/// The ConfigMap holding `system.json`.
const CONFIGMAP: &str = "system";

/// Where `Dockerfile.system` puts `system.json` in the image.
pub const BAKED_SYSTEM: &str = "/opt/palette/system.json";

/// Where the pods get `system.json` from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// Mounted from the ConfigMap `system`.
    ConfigMap,
    /// In this image (built from `Dockerfile.system`), copied into the
    /// pod's `emptyDir` by an init container.
    Baked(String),
}

/// The tag of the image `Dockerfile.system` builds: the base image's
/// repository with `-NAME` added (tag `latest`, same registry), so it is
/// pushed where the base image is. A name that already starts with the
/// repository's own name is not prefixed again (`palette` + `palette-shop`
/// is `palette-shop`, not `palette-palette-shop`).
pub fn system_image(base: &str, name: &str) -> String {
    let slash = base.rfind('/').map_or(0, |i| i + 1);
    let end = base[slash..].find([':', '@']).map_or(base.len(), |i| slash + i);
    let (path, repo) = (&base[..slash], &base[slash..end]);
    match name.strip_prefix(repo) {
        Some(rest) if rest.starts_with('-') => format!("{path}{name}:latest"),
        _ => format!("{path}{repo}-{name}:latest"),
    }
}

fn labels(s: &mut String, indent: usize, config: &SystemConfig, name: &str, component: &str) {
    let pad = " ".repeat(indent);
    let _ = writeln!(s, "{pad}app.kubernetes.io/name: {}", q(name));
    let _ = writeln!(s, "{pad}app.kubernetes.io/part-of: {}", q(&config.name));
    let _ = writeln!(s, "{pad}app.kubernetes.io/component: {}", q(component));
    let _ = writeln!(s, "{pad}app.kubernetes.io/managed-by: \"palette\"");
}

fn metadata(s: &mut String, config: &SystemConfig, name: &str, component: &str) {
    s.push_str("metadata:\n");
    let _ = writeln!(s, "  name: {}", q(name));
    let _ = writeln!(s, "  namespace: {}", q(&config.name));
    s.push_str("  labels:\n");
    labels(s, 4, config, name, component);
}

/// Renders `k8s/namespace.yaml`.
pub fn namespace(config: &SystemConfig) -> String {
    let mut s = String::from("apiVersion: v1\nkind: Namespace\nmetadata:\n");
    let _ = writeln!(s, "  name: {}", q(&config.name));
    s.push_str("  labels:\n");
    let _ = writeln!(s, "    app.kubernetes.io/part-of: {}", q(&config.name));
    s.push_str("    app.kubernetes.io/managed-by: \"palette\"\n");
    s
}

/// Renders `k8s/configmap.yaml` around the exact text of `system.json`.
pub fn configmap(config: &SystemConfig, system_json: &str) -> String {
    let mut s = String::with_capacity(system_json.len() + system_json.len() / 4 + 512);
    s.push_str("apiVersion: v1\nkind: ConfigMap\n");
    metadata(&mut s, config, CONFIGMAP, "config");
    s.push_str("data:\n  system.json: |\n");
    s.push_str(&block(system_json, 4));
    s
}

/// The pod-level security context and the volumes every pod shares.
fn pod_common(s: &mut String) {
    // Service account tokens and service-link variables are of no use to
    // a Palette service; the variables grow with every Service in the
    // namespace (thousands in a big system).
    s.push_str("      automountServiceAccountToken: false\n      enableServiceLinks: false\n");
    s.push_str("      securityContext:\n        runAsNonRoot: true\n");
    let _ = writeln!(s, "        runAsUser: {UID}\n        runAsGroup: {UID}\n        fsGroup: {UID}");
    s.push_str("        seccompProfile:\n          type: RuntimeDefault\n");
}

fn container_security(s: &mut String) {
    s.push_str(
        "          securityContext:\n            allowPrivilegeEscalation: false\n            \
         readOnlyRootFilesystem: true\n            capabilities:\n              drop: [\"ALL\"]\n",
    );
}

fn mounts_and_volumes(s: &mut String, source: &Source) {
    s.push_str("          volumeMounts:\n");
    let _ = writeln!(s, "            - name: data\n              mountPath: {}", q(CONTAINER_DIR));
    if let Source::Baked(_) = source {
        s.push_str("      volumes:\n        - name: data\n          emptyDir: {}\n");
        return;
    }
    let _ = writeln!(
        s,
        "            - name: system\n              mountPath: {}\n              subPath: system.json\n              readOnly: true",
        q(CONTAINER_SYSTEM)
    );
    s.push_str("      volumes:\n        - name: data\n          emptyDir: {}\n");
    let _ = writeln!(s, "        - name: system\n          configMap:\n            name: {}", q(CONFIGMAP));
}

fn image(s: &mut String, opts: &GenerateOptions, source: &Source) {
    let image = match source {
        Source::ConfigMap => &opts.image,
        Source::Baked(image) => image,
    };
    let _ = writeln!(s, "          image: {}", q(image));
    // A locally built image is loaded into the cluster (kind, minikube),
    // not pulled; `:latest` alone would make Kubernetes always pull.
    s.push_str("          imagePullPolicy: IfNotPresent\n");
}

/// With a baked `system.json`, the init container copying it where the
/// services read it (the `emptyDir`, writable, unlike the image's files).
fn init_container(s: &mut String, opts: &GenerateOptions, source: &Source) {
    if let Source::Baked(_) = source {
        s.push_str("      initContainers:\n        - name: system\n");
        image(s, opts, source);
        let _ = writeln!(s, "          command: {}", list(&["cp", BAKED_SYSTEM, CONTAINER_SYSTEM]));
        s.push_str(
            "          resources:\n            requests:\n              cpu: \"10m\"\n              memory: \"16Mi\"\n            \
             limits:\n              memory: \"64Mi\"\n",
        );
        container_security(s);
        s.push_str("          volumeMounts:\n");
        let _ = writeln!(s, "            - name: data\n              mountPath: {}", q(CONTAINER_DIR));
    }
}

/// Renders `k8s/services/HOST.yaml`: the service's Deployment and Service.
pub fn service(config: &SystemConfig, svc: &ServiceConfig, opts: &GenerateOptions, source: &Source) -> String {
    let host = svc.host.as_str();
    let mut s = String::from("apiVersion: apps/v1\nkind: Deployment\n");
    metadata(&mut s, config, host, "service");
    let _ = writeln!(s, "  annotations:\n    palette/service: {}", q(&svc.name));
    let _ = writeln!(s, "spec:\n  replicas: {}\n  selector:\n    matchLabels:", svc.instances.max(1));
    let _ = writeln!(s, "      app.kubernetes.io/name: {}", q(host));
    let _ = writeln!(s, "      app.kubernetes.io/part-of: {}", q(&config.name));
    s.push_str("  template:\n    metadata:\n      labels:\n");
    labels(&mut s, 8, config, host, "service");
    let _ = writeln!(s, "      annotations:\n        palette/service: {}", q(&svc.name));
    s.push_str("    spec:\n");
    pod_common(&mut s);
    // Long enough for the service to drain its requests and flush spans.
    s.push_str("      terminationGracePeriodSeconds: 30\n");
    init_container(&mut s, opts, source);
    s.push_str("      containers:\n        - name: palette\n");
    image(&mut s, opts, source);
    let _ = writeln!(s, "          args: {}", list(&serve_args(&svc.name)));
    let _ = writeln!(s, "          ports:\n            - name: http\n              containerPort: {}", svc.port);
    s.push_str(
        "          readinessProbe:\n            httpGet:\n              path: /healthz\n              port: http\n            \
         periodSeconds: 5\n            timeoutSeconds: 2\n            failureThreshold: 3\n",
    );
    s.push_str(
        "          livenessProbe:\n            httpGet:\n              path: /healthz\n              port: http\n            \
         initialDelaySeconds: 10\n            periodSeconds: 10\n            timeoutSeconds: 2\n            failureThreshold: 6\n",
    );
    // No CPU limit: CFS throttling would add latency the model does not
    // have. Memory is bounded for the memory work mode's buffers.
    s.push_str(
        "          resources:\n            requests:\n              cpu: \"100m\"\n              memory: \"64Mi\"\n            \
         limits:\n              memory: \"512Mi\"\n",
    );
    container_security(&mut s);
    mounts_and_volumes(&mut s, source);
    s.push_str("---\napiVersion: v1\nkind: Service\n");
    metadata(&mut s, config, host, "service");
    let _ = writeln!(s, "  annotations:\n    palette/service: {}", q(&svc.name));
    if svc.instances > 1 {
        // Headless: the name resolves to every ready pod, and callers spread
        // each call over them (a ClusterIP would balance connections only,
        // and a keep-alive connection pins a caller to one pod).
        s.push_str("spec:\n  type: ClusterIP\n  clusterIP: None\n  selector:\n");
    } else {
        s.push_str("spec:\n  type: ClusterIP\n  selector:\n");
    }
    let _ = writeln!(s, "    app.kubernetes.io/name: {}", q(host));
    let _ = writeln!(s, "    app.kubernetes.io/part-of: {}", q(&config.name));
    let _ = writeln!(
        s,
        "  ports:\n    - name: http\n      protocol: TCP\n      port: {}\n      targetPort: http",
        svc.port
    );
    s
}

/// Renders `k8s/load-job.yaml`: one run of `palette load` against the system.
pub fn load_job(config: &SystemConfig, opts: &GenerateOptions, source: &Source) -> String {
    let mut s = String::from("apiVersion: batch/v1\nkind: Job\n");
    metadata(&mut s, config, "load", "load");
    // One attempt: a failed load run is a result to read, not to retry.
    s.push_str("spec:\n  backoffLimit: 0\n  template:\n    metadata:\n      labels:\n");
    labels(&mut s, 8, config, "load", "load");
    s.push_str("    spec:\n      restartPolicy: Never\n");
    pod_common(&mut s);
    init_container(&mut s, opts, source);
    s.push_str("      containers:\n        - name: load\n");
    image(&mut s, opts, source);
    let _ = writeln!(s, "          args: {}", list(&load_args()));
    s.push_str(
        "          resources:\n            requests:\n              cpu: \"500m\"\n              memory: \"128Mi\"\n            \
         limits:\n              memory: \"1Gi\"\n",
    );
    container_security(&mut s);
    mounts_and_volumes(&mut s, source);
    s
}

#[cfg(test)]
mod tests {
    use super::system_image;

    #[test]
    fn system_images_sit_beside_the_base() {
        assert_eq!(system_image("palette:latest", "shop"), "palette-shop:latest");
        assert_eq!(system_image("palette", "shop"), "palette-shop:latest");
        assert_eq!(system_image("reg.io:5000/team/palette:1.2", "shop"), "reg.io:5000/team/palette-shop:latest");
        assert_eq!(system_image("palette:latest", "palette-naive"), "palette-naive:latest");
        assert_eq!(system_image("reg.io/palette@sha256:ab", "palette-shop"), "reg.io/palette-shop:latest");
        assert_eq!(system_image("palette", "palettes"), "palette-palettes:latest");
    }
}
