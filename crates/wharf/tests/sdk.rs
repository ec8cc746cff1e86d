//! The Rust AWS SDK (`aws-sdk-ecs`) as a second real client against the real binary: the
//! seed-003 flow (cluster, task definition, service) with only the endpoint changed.
#![allow(clippy::unwrap_used)]

use aws_sdk_ecs::types::{ContainerDefinition, NetworkMode, PortMapping, TransportProtocol};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const KEY: &str = "AKIAWHARFSDKTEST0001";
const SECRET: &str = "sdk-test-secret-0000000000000000000000000";

struct Server {
    child: Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--no-profile",
            "--no-agent",
            "--account-id",
            "123456789012",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("WHARF_ACCESS_KEY_ID", KEY)
        .env("WHARF_SECRET_ACCESS_KEY", SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let endpoint = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.split_once("endpoint:").map(|(_, e)| e.trim().to_string()))
        .expect("wharf printed its endpoint");
    // Keep reading so the server's later lines have somewhere to go.
    std::thread::spawn(move || lines.for_each(drop));
    Server { child, endpoint, _dir: dir }
}

fn client(endpoint: &str, secret: &str) -> aws_sdk_ecs::Client {
    let conf = aws_sdk_ecs::Config::builder()
        .endpoint_url(endpoint)
        .region(aws_sdk_ecs::config::Region::new("eu-central-1"))
        .credentials_provider(aws_credential_types::Credentials::new(KEY, secret, None, None, "test"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .retry_config(aws_sdk_ecs::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_ecs::Client::from_conf(conf)
}

#[tokio::test]
async fn seed_003_flow_through_the_rust_sdk() {
    let server = start();
    let ecs = client(&server.endpoint, SECRET);

    let cluster = ecs.create_cluster().cluster_name("seed").send().await.unwrap().cluster.unwrap();
    assert_eq!(cluster.cluster_arn(), Some("arn:aws:ecs:eu-central-1:123456789012:cluster/seed"));

    let container = ContainerDefinition::builder()
        .name("web")
        .image("127.0.0.1:5000/ecs:v0.1")
        .essential(true)
        .cpu(0)
        .memory(128)
        .port_mappings(
            PortMapping::builder().host_port(0).container_port(8080).protocol(TransportProtocol::Tcp).build(),
        )
        .build();
    for revision in 1..=2 {
        let td = ecs
            .register_task_definition()
            .family("web")
            .network_mode(NetworkMode::Bridge)
            .container_definitions(container.clone())
            .send()
            .await
            .unwrap()
            .task_definition
            .unwrap();
        assert_eq!(td.revision(), revision);
    }
    let described = ecs.describe_task_definition().task_definition("web:1").send().await.unwrap();
    let c = &described.task_definition().unwrap().container_definitions()[0];
    assert_eq!((c.memory(), c.port_mappings()[0].host_port()), (Some(128), Some(0)));

    let service = ecs
        .create_service()
        .cluster("seed")
        .service_name("web")
        .task_definition("web:1")
        .desired_count(10)
        .send()
        .await
        .unwrap()
        .service
        .unwrap();
    assert_eq!(service.desired_count(), 10);
    assert_eq!(service.deployments().len(), 1);
    let config = service.deployment_configuration().unwrap();
    assert_eq!((config.maximum_percent(), config.minimum_healthy_percent()), (Some(200), Some(100)));

    let missing = ecs.describe_services().cluster("seed").services("web").services("nope").send().await.unwrap();
    assert_eq!(missing.services().len(), 1);
    assert_eq!(missing.failures()[0].reason(), Some("MISSING"));

    let err = ecs.describe_services().cluster("nope").services("web").send().await.unwrap_err();
    assert!(err.into_service_error().is_cluster_not_found_exception());
}

#[tokio::test]
async fn a_wrong_secret_is_rejected_with_the_aws_error() {
    let server = start();
    let ecs = client(&server.endpoint, "not-the-secret");
    let err = ecs.list_clusters().send().await.unwrap_err();
    let err = err.into_service_error();
    assert_eq!(err.meta().code(), Some("InvalidSignatureException"), "{err:?}");
}
