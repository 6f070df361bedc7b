//! Host agents on Kubernetes: a StatefulSet of agent pods behind a headless
//! Service, the job credential as a Secret, rendered as typed objects
//! (`k8s-openapi`) and applied with `kubectl`; the controller attaches to the
//! pods through their stable DNS names, ranked by their pod index.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, ObjectFieldSelector, Pod, PodSpec,
    PodTemplateSpec, ResourceRequirements, Secret, SecretVolumeSource, Service, ServicePort,
    ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::{HostMesh, HostMeshError, DEFAULT_AGENT_PORT};
use crate::transport::JobCredential;

/// Host agents to run as a StatefulSet: `replicas` pods named `NAME-0`,
/// `NAME-1`, ... behind the headless Service `NAME`, each running
/// `monarch host` with the credential mounted from the Secret
/// `NAME-credential`.
///
/// The controller must reach the pods' network (run it in a pod of the same
/// cluster): it attaches to `NAME-i.NAME.NAMESPACE.svc.cluster.local:26600`.
///
/// ```
/// use monarch_core::{JobCredential, KubernetesJob};
///
/// let job = KubernetesJob::new("trainer", "registry.example/monarch:1.0", 4).gpus_per_pod(8);
/// let manifests = job.manifests(&JobCredential::mint().unwrap());
/// assert_eq!(manifests.stateful_set.spec.as_ref().unwrap().replicas, Some(4));
/// assert_eq!(job.agent_dns_names()[3], "trainer-3.trainer.default.svc.cluster.local");
/// ```
#[derive(Clone, Debug)]
pub struct KubernetesJob {
    name: String,
    namespace: String,
    image: String,
    replicas: usize,
    port: u16,
    program: String,
    gpus_per_pod: Option<u32>,
    cluster_domain: String,
    kubectl: String,
}

/// The objects a [`KubernetesJob`] creates.
#[derive(Clone, Debug)]
pub struct Manifests {
    /// The job credential, as `job.pem`.
    pub secret: Secret,
    /// The headless Service that gives each pod its DNS name.
    pub service: Service,
    /// The agents.
    pub stateful_set: StatefulSet,
}

/// One agent pod, ready to attach to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentPod {
    /// Its pod index (`apps.kubernetes.io/pod-index`): its rank on `hosts`.
    pub rank: usize,
    /// The pod's name (the host's name in proc ids and errors).
    pub name: String,
    /// Its stable DNS name.
    pub dns_name: String,
}

/// Running agents on Kubernetes went wrong.
#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    /// `kubectl` could not be run or refused the request.
    #[error("`{command}` failed: {reason}")]
    Kubectl {
        /// The command line.
        command: String,
        /// What it said.
        reason: String,
    },
    /// The API's answer is not a list of pods.
    #[error("the pod list from the API cannot be read: {0}")]
    BadAnswer(String),
    /// Not every agent pod became ready in time.
    #[error("{ready} of {expected} agent pods of {job} were ready after {waited:?}{}", if detail.is_empty() { String::new() } else { format!(" ({detail})") })]
    NotReady {
        /// The job's name.
        job: String,
        /// How many were.
        ready: usize,
        /// How many there should be.
        expected: usize,
        /// How long it waited.
        waited: Duration,
        /// The pods that are not ready and why.
        detail: String,
    },
    /// A pod's DNS name did not resolve.
    #[error("cannot resolve agent pod {name}: {source}")]
    Resolve {
        /// The DNS name.
        name: String,
        /// Why.
        source: std::io::Error,
    },
    /// Attaching to the agents failed.
    #[error(transparent)]
    Attach(#[from] HostMeshError),
}

/// The label every object of a job carries, with the job's name.
pub const JOB_LABEL: &str = "monarch-rs/job";

/// The label StatefulSet pods carry with their index.
const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// Where the credential is mounted in the agent container.
const CREDENTIAL_DIR: &str = "/etc/monarch";

impl KubernetesJob {
    /// `replicas` agents from `image`, in the `default` namespace, on port
    /// 26600, running the `monarch` program found on the image's `PATH`.
    pub fn new(name: impl Into<String>, image: impl Into<String>, replicas: usize) -> Self {
        KubernetesJob {
            name: name.into(),
            namespace: "default".into(),
            image: image.into(),
            replicas,
            port: DEFAULT_AGENT_PORT,
            program: "monarch".into(),
            gpus_per_pod: None,
            cluster_domain: "cluster.local".into(),
            kubectl: "kubectl".into(),
        }
    }

    /// The namespace (default `default`).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The agents' port (default 26600).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// The `monarch` program in the image (default: `monarch` on `PATH`).
    pub fn program(mut self, program: impl Into<String>) -> Self {
        self.program = program.into();
        self
    }

    /// GPUs each pod asks for (`nvidia.com/gpu`).
    pub fn gpus_per_pod(mut self, gpus: u32) -> Self {
        self.gpus_per_pod = Some(gpus);
        self
    }

    /// The cluster's DNS domain (default `cluster.local`).
    pub fn cluster_domain(mut self, domain: impl Into<String>) -> Self {
        self.cluster_domain = domain.into();
        self
    }

    /// The `kubectl` to run (default: `kubectl` on `PATH`).
    pub fn kubectl(mut self, program: impl Into<String>) -> Self {
        self.kubectl = program.into();
        self
    }

    /// The Secret, Service and StatefulSet of this job.
    pub fn manifests(&self, credential: &JobCredential) -> Manifests {
        let secret_name = format!("{}-credential", self.name);
        let secret = Secret {
            metadata: self.metadata(&secret_name),
            string_data: Some(BTreeMap::from([("job.pem".into(), credential.to_pem())])),
            type_: Some("Opaque".into()),
            ..Secret::default()
        };
        let service = Service {
            metadata: self.metadata(&self.name),
            spec: Some(ServiceSpec {
                cluster_ip: Some("None".into()),
                // Agents are reachable by name as soon as they run.
                publish_not_ready_addresses: Some(true),
                selector: Some(self.labels()),
                ports: Some(vec![ServicePort {
                    name: Some("agent".into()),
                    port: i32::from(self.port),
                    protocol: Some("UDP".into()),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        };
        let container = Container {
            name: "agent".into(),
            image: Some(self.image.clone()),
            command: Some(vec![self.program.clone()]),
            args: Some(vec![
                "host".into(),
                "--listen".into(),
                format!("0.0.0.0:{}", self.port),
                "--credential".into(),
                format!("{CREDENTIAL_DIR}/job.pem"),
                "--name".into(),
                // Kubernetes expands $(VAR) from the container's env.
                "$(POD_NAME)".into(),
            ]),
            env: Some(vec![EnvVar {
                name: "POD_NAME".into(),
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "metadata.name".into(),
                        ..ObjectFieldSelector::default()
                    }),
                    ..EnvVarSource::default()
                }),
                ..EnvVar::default()
            }]),
            ports: Some(vec![ContainerPort {
                name: Some("agent".into()),
                container_port: i32::from(self.port),
                protocol: Some("UDP".into()),
                ..ContainerPort::default()
            }]),
            volume_mounts: Some(vec![VolumeMount {
                name: "credential".into(),
                mount_path: CREDENTIAL_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            }]),
            resources: self.gpus_per_pod.map(|gpus| ResourceRequirements {
                limits: Some(BTreeMap::from([(
                    "nvidia.com/gpu".into(),
                    Quantity(gpus.to_string()),
                )])),
                ..ResourceRequirements::default()
            }),
            ..Container::default()
        };
        let stateful_set = StatefulSet {
            metadata: self.metadata(&self.name),
            spec: Some(StatefulSetSpec {
                replicas: Some(i32::try_from(self.replicas).unwrap_or(i32::MAX)),
                service_name: Some(self.name.clone()),
                // Every agent starts at once, not one after another.
                pod_management_policy: Some("Parallel".into()),
                selector: LabelSelector {
                    match_labels: Some(self.labels()),
                    ..LabelSelector::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(self.labels()),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![container],
                        volumes: Some(vec![Volume {
                            name: "credential".into(),
                            secret: Some(SecretVolumeSource {
                                secret_name: Some(secret_name),
                                default_mode: Some(0o400),
                                ..SecretVolumeSource::default()
                            }),
                            ..Volume::default()
                        }]),
                        ..PodSpec::default()
                    }),
                },
                ..StatefulSetSpec::default()
            }),
            ..StatefulSet::default()
        };
        Manifests {
            secret,
            service,
            stateful_set,
        }
    }

    /// The pods' stable DNS names, by rank.
    pub fn agent_dns_names(&self) -> Vec<String> {
        (0..self.replicas)
            .map(|i| {
                format!(
                    "{}-{i}.{}.{}.svc.{}",
                    self.name, self.name, self.namespace, self.cluster_domain
                )
            })
            .collect()
    }

    /// The agent pods of an API answer (the JSON of
    /// `kubectl get pods -l monarch-rs/job=NAME -o json`, or a `PodList`)
    /// once every rank's pod is ready, by rank; which are not, otherwise.
    pub fn ready_agents(&self, answer: &str) -> Result<Vec<AgentPod>, NotReady> {
        #[derive(serde::Deserialize)]
        struct Items {
            items: Vec<Pod>,
        }
        let pods = serde_json::from_str::<Items>(answer)
            .map_err(|e| NotReady::BadAnswer(e.to_string()))?
            .items;
        let dns = self.agent_dns_names();
        let mut ready = BTreeMap::new();
        let mut waiting = Vec::new();
        for pod in &pods {
            let name = pod.metadata.name.clone().unwrap_or_default();
            let Some(rank) = pod_index(pod, &self.name).filter(|rank| *rank < self.replicas) else {
                continue;
            };
            match not_ready_reason(pod) {
                None => {
                    ready.insert(
                        rank,
                        AgentPod {
                            rank,
                            name,
                            dns_name: dns[rank].clone(),
                        },
                    );
                }
                Some(why) => waiting.push(format!("{name}: {why}")),
            }
        }
        if ready.len() == self.replicas {
            return Ok(ready.into_values().collect());
        }
        let missing = (0..self.replicas)
            .filter(|rank| !ready.contains_key(rank))
            .filter(|rank| {
                !pods
                    .iter()
                    .any(|pod| pod_index(pod, &self.name) == Some(*rank))
            })
            .map(|rank| format!("{}-{rank}: no pod yet", self.name));
        waiting.extend(missing);
        Err(NotReady::Waiting {
            ready: ready.len(),
            detail: waiting.join("; "),
        })
    }

    /// Creates (or updates) the job's objects with `kubectl apply`.
    pub async fn apply(&self, credential: &JobCredential) -> Result<(), KubernetesError> {
        let list = self.manifests(credential).to_json();
        self.kubectl_run(&["apply", "-f", "-"], Some(list))
            .await
            .map(drop)
    }

    /// Waits (at most `timeout`) until every agent pod is ready, asking the
    /// API about once a second.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<Vec<AgentPod>, KubernetesError> {
        let selector = format!("{JOB_LABEL}={}", self.name);
        let args = [
            "get",
            "pods",
            "-n",
            &self.namespace,
            "-l",
            &selector,
            "-o",
            "json",
        ];
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let answer = self.kubectl_run(&args, None).await?;
            let (ready, detail) = match self.ready_agents(&answer) {
                Ok(agents) => return Ok(agents),
                Err(NotReady::BadAnswer(why)) => return Err(KubernetesError::BadAnswer(why)),
                Err(NotReady::Waiting { ready, detail }) => (ready, detail),
            };
            if started.elapsed() >= timeout {
                return Err(KubernetesError::NotReady {
                    job: self.name.clone(),
                    ready,
                    expected: self.replicas,
                    waited: started.elapsed(),
                    detail,
                });
            }
        }
    }

    /// Waits for the agent pods and attaches to them, in rank order along
    /// `hosts`.
    pub async fn attach(
        &self,
        credential: &JobCredential,
        timeout: Duration,
    ) -> Result<HostMesh, KubernetesError> {
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for agent in self.wait_ready(timeout).await? {
            let resolved = tokio::net::lookup_host((agent.dns_name.as_str(), self.port))
                .await
                .and_then(|mut found| {
                    found.next().ok_or_else(|| {
                        std::io::Error::new(std::io::ErrorKind::NotFound, "no address")
                    })
                })
                .map_err(|source| KubernetesError::Resolve {
                    name: agent.dns_name.clone(),
                    source,
                })?;
            addrs.push(resolved);
        }
        Ok(HostMesh::attach(&addrs, credential).await?)
    }

    /// Deletes the job's objects (the pods' agents kill their workers as
    /// they stop).
    pub async fn delete(&self) -> Result<(), KubernetesError> {
        let selector = format!("{JOB_LABEL}={}", self.name);
        let args = [
            "delete",
            "statefulset,service,secret",
            "-n",
            &self.namespace,
            "-l",
            &selector,
        ];
        self.kubectl_run(&args, None).await.map(drop)
    }

    fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".into(), "monarch-agent".into()),
            (JOB_LABEL.into(), self.name.clone()),
        ])
    }

    fn metadata(&self, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels()),
            ..ObjectMeta::default()
        }
    }

    async fn kubectl_run(
        &self,
        args: &[&str],
        stdin: Option<String>,
    ) -> Result<String, KubernetesError> {
        let command = || format!("{} {}", self.kubectl, args.join(" "));
        let failed = |reason: String| KubernetesError::Kubectl {
            command: command(),
            reason,
        };
        let mut child = Command::new(&self.kubectl)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| failed(e.to_string()))?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())
                .await
                .map_err(|e| failed(e.to_string()))?;
        }
        let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .map_err(|_| failed("no answer within 60 s".into()))?
            .map_err(|e| failed(e.to_string()))?;
        if !output.status.success() {
            return Err(failed(format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        String::from_utf8(output.stdout).map_err(|e| failed(e.to_string()))
    }
}

/// Why [`KubernetesJob::ready_agents`] has no full set of agents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotReady {
    /// The answer is not a list of pods.
    BadAnswer(String),
    /// Some agents are not ready yet.
    Waiting {
        /// How many are.
        ready: usize,
        /// Which are not, and why.
        detail: String,
    },
}

impl Manifests {
    /// The objects as one `v1` `List` in JSON, which `kubectl apply -f`
    /// takes.
    pub fn to_json(&self) -> String {
        let items = [
            serde_json::to_value(&self.secret),
            serde_json::to_value(&self.service),
            serde_json::to_value(&self.stateful_set),
        ]
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .expect("Kubernetes objects serialise to JSON");
        let list = serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": items });
        serde_json::to_string_pretty(&list).expect("a JSON value serialises")
    }
}

/// A pod's index in its StatefulSet: the pod-index label, else the ordinal
/// at the end of its name `JOB-N`.
fn pod_index(pod: &Pod, job: &str) -> Option<usize> {
    let labels = pod.metadata.labels.as_ref();
    if let Some(index) = labels.and_then(|l| l.get(POD_INDEX_LABEL)) {
        return index.parse().ok();
    }
    pod.metadata
        .name
        .as_deref()?
        .strip_prefix(job)?
        .strip_prefix('-')?
        .parse()
        .ok()
}

/// `None` for a running pod whose `Ready` condition is true; why not
/// otherwise.
fn not_ready_reason(pod: &Pod) -> Option<String> {
    let Some(status) = pod.status.as_ref() else {
        return Some("no status yet".into());
    };
    let phase = status.phase.as_deref().unwrap_or("Unknown");
    if phase != "Running" {
        return Some(format!("phase {phase}"));
    }
    let ready = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready");
    match ready {
        Some(condition) if condition.status == "True" => None,
        Some(condition) => Some(format!(
            "not ready{}",
            condition
                .message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        )),
        None => Some("no Ready condition".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};

    fn job() -> KubernetesJob {
        KubernetesJob::new("trainer", "registry.example/monarch:1", 3)
            .namespace("ml")
            .gpus_per_pod(8)
    }

    /// A pod as the API shows it.
    fn pod(index: usize, phase: &str, ready: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(format!("trainer-{index}")),
                labels: Some(BTreeMap::from([
                    (POD_INDEX_LABEL.into(), index.to_string()),
                    (JOB_LABEL.into(), "trainer".into()),
                ])),
                ..ObjectMeta::default()
            },
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    /// What `kubectl get pods -o json` prints for these pods.
    fn answer(pods: &[Pod]) -> String {
        serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": pods }).to_string()
    }

    #[test]
    fn manifests_parse_back_into_typed_objects() {
        let credential = JobCredential::mint().unwrap();
        let list: serde_json::Value =
            serde_json::from_str(&job().manifests(&credential).to_json()).unwrap();
        let items = list["items"].as_array().unwrap();
        let kinds: Vec<&str> = items.iter().map(|i| i["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["Secret", "Service", "StatefulSet"]);

        let secret: Secret = serde_json::from_value(items[0].clone()).unwrap();
        let pem = &secret.string_data.as_ref().unwrap()["job.pem"];
        let dir = std::env::temp_dir().join(format!("monarch-k8s-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("job.pem");
        std::fs::write(&file, pem).unwrap();
        assert!(
            JobCredential::read(&file).is_ok(),
            "the Secret holds a usable credential"
        );
        std::fs::remove_dir_all(&dir).unwrap();

        let service: Service = serde_json::from_value(items[1].clone()).unwrap();
        let spec = service.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        let port = &spec.ports.unwrap()[0];
        assert_eq!((port.port, port.protocol.as_deref()), (26600, Some("UDP")));
        assert_eq!(spec.selector.unwrap()[JOB_LABEL], "trainer");

        let set: StatefulSet = serde_json::from_value(items[2].clone()).unwrap();
        assert_eq!(set.metadata.namespace.as_deref(), Some("ml"));
        let spec = set.spec.unwrap();
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.service_name.as_deref(), Some("trainer"));
        let pod = spec.template.spec.unwrap();
        let container = &pod.containers[0];
        let args = container.args.as_ref().unwrap();
        assert_eq!(args[..3], ["host", "--listen", "0.0.0.0:26600"]);
        assert!(args.contains(&"$(POD_NAME)".to_string()));
        let limits = container
            .resources
            .as_ref()
            .unwrap()
            .limits
            .as_ref()
            .unwrap();
        assert_eq!(limits["nvidia.com/gpu"], Quantity("8".into()));
        let volume = &pod.volumes.unwrap()[0];
        let source = volume.secret.as_ref().unwrap();
        assert_eq!(source.secret_name.as_deref(), Some("trainer-credential"));
    }

    #[test]
    fn agents_are_ranked_by_pod_index_once_all_are_ready() {
        let job = job();
        let waiting = job.ready_agents(&answer(&[
            pod(2, "Running", true),
            pod(0, "Running", true),
            pod(1, "Pending", false),
        ]));
        assert_eq!(
            waiting,
            Err(NotReady::Waiting {
                ready: 2,
                detail: "trainer-1: phase Pending".into()
            })
        );
        let missing = job.ready_agents(&answer(&[pod(0, "Running", true)]));
        assert!(
            matches!(&missing, Err(NotReady::Waiting { ready: 1, detail }) if detail.contains("trainer-2: no pod yet")),
            "{missing:?}"
        );
        let agents = job
            .ready_agents(&answer(&[
                pod(2, "Running", true),
                pod(5, "Running", true),
                pod(0, "Running", true),
                pod(1, "Running", true),
            ]))
            .unwrap();
        let names: Vec<_> = agents.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["trainer-0", "trainer-1", "trainer-2"]);
        assert_eq!(agents[1].dns_name, "trainer-1.trainer.ml.svc.cluster.local");
        assert!(matches!(
            job.ready_agents("{\"kind\": \"Status\"}"),
            Err(NotReady::BadAnswer(_))
        ));
    }

    /// A `kubectl` that records its arguments and stdin and prints `reply`.
    fn fake_kubectl(dir: &std::path::Path, reply: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("reply.json"), reply).unwrap();
        let script = dir.join("kubectl");
        let text = format!(
            "#!/bin/sh\necho \"$@\" >> '{d}/args'\ncat > '{d}/stdin'\ncat '{d}/reply.json'\n",
            d = dir.display()
        );
        std::fs::write(&script, text).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        script.display().to_string()
    }

    #[tokio::test]
    async fn apply_and_wait_go_through_kubectl() {
        let dir = std::env::temp_dir().join(format!("monarch-kubectl-{}", std::process::id()));
        let ready = answer(&[
            pod(0, "Running", true),
            pod(1, "Running", true),
            pod(2, "Running", true),
        ]);
        let ready_job = job().kubectl(fake_kubectl(&dir, &ready));
        ready_job
            .apply(&JobCredential::mint().unwrap())
            .await
            .unwrap();
        let applied: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("stdin")).unwrap()).unwrap();
        assert_eq!(applied["kind"], "List");
        let agents = ready_job.wait_ready(Duration::from_secs(10)).await.unwrap();
        assert_eq!(agents.len(), 3);
        let args = std::fs::read_to_string(dir.join("args")).unwrap();
        assert!(args.contains("apply -f -"), "{args}");
        assert!(
            args.contains("get pods -n ml -l monarch-rs/job=trainer -o json"),
            "{args}"
        );

        let pending = job().kubectl(fake_kubectl(&dir, &answer(&[pod(0, "Pending", false)])));
        let late = pending.wait_ready(Duration::from_millis(10)).await;
        assert!(
            matches!(
                &late,
                Err(KubernetesError::NotReady {
                    ready: 0,
                    expected: 3,
                    ..
                })
            ),
            "{late:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
