//! Scaling out: `--reuse-port` lets two processes serve one port (and without it the second
//! is refused), and the shipped Kubernetes manifests agree with the config they embed: ports,
//! probes, scrape annotations, selectors, and a grace period longer than the drain. The
//! Dockerfile is checked for its shape (multi-stage, non-root); no image is built here.

mod ops_util;

use std::path::Path;
use std::time::Duration;

use ops_util::*;
use reactor_pool::Config;
use yaml_rust2::{Yaml, YamlLoader};

/// Two servers with `--reuse-port` on one port both serve it, and the second keeps serving
/// when the first stops; a third without the flag cannot bind the port (exit 1).
#[test]
fn reuse_port_lets_two_processes_share_a_port() {
    let mut a = Proc::spawn(&["serve", "--listen", "127.0.0.1:0", "--reuse-port"]);
    let addr = a.listening();
    let port_addr = addr.to_string();
    let mut b = Proc::spawn(&["serve", "--listen", &port_addr, "--reuse-port"]);
    assert_eq!(b.listening(), addr);
    let (status, _, err) = run(&["serve", "--listen", &port_addr], b"");
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("cannot listen"), "{err}");
    wait_echo(addr);
    a.stop();
    // The kernel now sends every connection to b.
    for _ in 0..5 {
        assert_eq!(echo_once(addr, b"still here\n").unwrap(), b"still here\n");
    }
    b.stop();
}

/// The YAML documents of `contrib/kubernetes/NAME`.
fn manifest(name: &str) -> Yaml {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib/kubernetes")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(docs.len(), 1, "{name}: one document");
    docs.remove(0)
}

/// `doc` at a dotted path of keys (`0`, `1`… index arrays; a key that contains dots itself,
/// such as `config.toml` or `prometheus.io/port`, is matched whole); panics naming the path.
#[track_caller]
fn at<'a>(doc: &'a Yaml, path: &str) -> &'a Yaml {
    let parts: Vec<&str> = path.split('.').collect();
    let mut node = doc;
    let mut i = 0;
    while i < parts.len() {
        let next = match (node, parts[i].parse::<usize>()) {
            (Yaml::Array(_), Ok(index)) => Some((&node[index], 1)),
            // The longest run of parts that is a key.
            _ => (1..=parts.len() - i).rev().find_map(|n| {
                let key = parts[i..i + n].join(".");
                let child = &node[key.as_str()];
                (!child.is_badvalue()).then_some((child, n))
            }),
        };
        let Some((child, used)) = next else {
            panic!("no {path} (at {})", parts[i]);
        };
        node = child;
        i += used;
    }
    node
}

#[track_caller]
fn int(doc: &Yaml, path: &str) -> i64 {
    at(doc, path)
        .as_i64()
        .unwrap_or_else(|| panic!("{path} is not an integer"))
}

#[track_caller]
fn text<'a>(doc: &'a Yaml, path: &str) -> &'a str {
    at(doc, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path} is not a string"))
}

/// A container port given by name or number, as a number.
#[track_caller]
fn port_number(container: &Yaml, port: &Yaml) -> i64 {
    match port {
        Yaml::Integer(n) => *n,
        Yaml::String(name) => at(container, "ports")
            .as_vec()
            .unwrap()
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .map(|p| int(p, "containerPort"))
            .unwrap_or_else(|| panic!("no container port named {name}")),
        other => panic!("not a port: {other:?}"),
    }
}

/// The manifests against the config in the ConfigMap: the container ports, probes and
/// Service target the configured listen port, the scrape annotations the metrics port; both
/// listen on every interface (a pod is reached on its IP); the pod mounts that ConfigMap where
/// its `--config` points; selectors match the pod labels; and the grace period exceeds the
/// preStop pause plus `shutdown_timeout`, so a drain is never cut short by SIGKILL.
#[test]
fn kubernetes_manifests_match_the_embedded_config() {
    let cm = manifest("configmap.yaml");
    let deploy = manifest("deployment.yaml");
    let service = manifest("service.yaml");
    let pdb = manifest("pdb.yaml");
    assert_eq!(text(&cm, "kind"), "ConfigMap");
    assert_eq!(text(&deploy, "kind"), "Deployment");
    assert_eq!(text(&service, "kind"), "Service");
    assert_eq!(text(&pdb, "kind"), "PodDisruptionBudget");

    let config = Config::from_toml(text(&cm, "data.config.toml")).expect("the embedded config");
    assert!(config.listen.ip().is_unspecified(), "{}", config.listen);
    let metrics = config.metrics_listen.expect("metrics_listen is set");
    assert!(metrics.ip().is_unspecified(), "{metrics}");
    let listen_port = i64::from(config.listen.port());
    let metrics_port = i64::from(metrics.port());
    assert_ne!(listen_port, 0, "a fixed port");

    let pod = at(&deploy, "spec.template");
    let container = at(pod, "spec.containers.0");
    assert_eq!(
        port_number(container, &Yaml::String("echo".into())),
        listen_port
    );
    assert_eq!(
        port_number(container, &Yaml::String("metrics".into())),
        metrics_port
    );
    for probe in ["readinessProbe", "livenessProbe"] {
        let port = at(container, &format!("{probe}.tcpSocket.port"));
        assert_eq!(port_number(container, port), listen_port, "{probe}");
    }
    assert_eq!(
        text(pod, "metadata.annotations.prometheus.io/scrape"),
        "true"
    );
    assert_eq!(
        text(pod, "metadata.annotations.prometheus.io/port"),
        metrics_port.to_string()
    );
    assert_eq!(
        text(pod, "metadata.annotations.prometheus.io/path"),
        "/metrics"
    );

    // --config points into the mounted ConfigMap.
    let args: Vec<&str> = at(container, "args")
        .as_vec()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let config_arg = args[args.iter().position(|&a| a == "--config").unwrap() + 1];
    let mount = at(container, "volumeMounts.0");
    let volume = at(pod, "spec.volumes.0");
    assert_eq!(text(mount, "name"), text(volume, "name"));
    assert_eq!(text(volume, "configMap.name"), text(&cm, "metadata.name"));
    assert_eq!(
        config_arg,
        format!("{}/config.toml", text(mount, "mountPath"))
    );

    // The drain fits in the grace period, after the preStop pause.
    let grace = Duration::from_secs(int(pod, "spec.terminationGracePeriodSeconds") as u64);
    let pre_stop = Duration::from_secs(int(container, "lifecycle.preStop.sleep.seconds") as u64);
    assert!(
        grace > pre_stop + config.shutdown_timeout,
        "terminationGracePeriodSeconds {grace:?} <= preStop {pre_stop:?} + shutdown_timeout {:?}",
        config.shutdown_timeout
    );
    assert!(at(pod, "spec.securityContext.runAsNonRoot").as_bool() == Some(true));

    // Selectors: the Deployment's, the Service's and the PDB's all pick the pods.
    let labels = at(pod, "metadata.labels");
    for (what, selector) in [
        ("deployment", at(&deploy, "spec.selector.matchLabels")),
        ("service", at(&service, "spec.selector")),
        ("pdb", at(&pdb, "spec.selector.matchLabels")),
    ] {
        for (key, value) in selector.as_hash().unwrap() {
            assert_eq!(&labels[key.as_str().unwrap()], value, "{what} selector");
        }
    }
    let service_port = at(&service, "spec.ports.0");
    assert_eq!(int(service_port, "port"), listen_port);
    assert_eq!(
        port_number(container, at(service_port, "targetPort")),
        listen_port
    );
}

/// The Dockerfile builds in one stage and ships from another, as a numeric non-root user,
/// exposing the ports the manifests use.
#[test]
fn dockerfile_is_multi_stage_and_non_root() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile");
    let text = std::fs::read_to_string(path).unwrap();
    let instructions: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let froms: Vec<&&str> = instructions
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(froms.len(), 2, "{froms:?}");
    assert!(froms[0].ends_with(" AS build"), "{}", froms[0]);
    assert!(
        instructions
            .iter()
            .any(|l| l.starts_with("COPY --from=build ")),
        "the runtime stage takes the binary from the build stage"
    );
    let user = instructions
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("numeric uid");
    assert_ne!(uid, 0);
    assert!(instructions.contains(&"EXPOSE 7007 9707"));
}
