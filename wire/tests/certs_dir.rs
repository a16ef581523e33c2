//! The files `raftwal certs` writes are enough to run a cluster: two nodes and a client load
//! their identities from the directory and talk to each other over mutual TLS.

// Helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod support;

use raftwal_wire::client::*;
use raftwal_wire::codec::FrameLimits;
use raftwal_wire::tls::certs::ClusterCerts;
use raftwal_wire::tls::TlsIdentity;
use raftwal_wire::transport::*;
use raftwal_wire::types::*;
use support::*;

#[tokio::test]
async fn identities_loaded_from_a_certs_directory_connect() {
    let dir = tempfile::tempdir().unwrap();
    let certs = ClusterCerts::generate(None, &[NodeId(1), NodeId(2)]).unwrap();
    certs.write_to_dir(dir.path()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode =
            std::fs::metadata(dir.path().join("node-1.key.pem")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "private keys are readable by their owner only");
    }

    let id1 = TlsIdentity::load_node(dir.path(), NodeId(1)).unwrap();
    let id2 = TlsIdentity::load_node(dir.path(), NodeId(2)).unwrap();
    assert_eq!(id1.cluster(), certs.cluster);
    let (t1, mut e1) = start(fast_config(1, loopback()), &id1);
    let (t2, mut e2) = start(fast_config(2, loopback()), &id2);
    t1.add_peer(NodeId(2), t2.local_addr().unwrap());
    t2.add_peer(NodeId(1), t1.local_addr().unwrap());
    wait_connected(&mut e1, 2).await;
    t2.send(&heartbeat(2, 1, 1)).unwrap();
    assert_eq!(wait_message(&mut e1).await, heartbeat(2, 1, 1));

    let client = ClientEndpoint::open(
        &TlsIdentity::load_client(dir.path()).unwrap(),
        loopback(),
        &QuicTuning::default(),
        FrameLimits::default(),
    )
    .unwrap();
    let conn = client.connect(t2.local_addr().unwrap()).await.unwrap();
    let request = ClientRequest::Status(StatusRequest { log: LogId(1) });
    let (answer, ()) = tokio::join!(conn.request(&request), async {
        let event = wait_for(&mut e2, |e| match e {
            TransportEvent::ClientRequest(r) => Some(r),
            _ => None,
        })
        .await;
        let answer = ClientResponse::NotLeader(NotLeader { log: LogId(1), leader: None });
        event.responder.respond(&answer).unwrap();
    });
    assert_eq!(
        answer.unwrap(),
        ClientResponse::NotLeader(NotLeader { log: LogId(1), leader: None })
    );
    t1.close();
    t2.close();
    client.close();
}

#[test]
fn a_mismatched_key_or_a_damaged_file_is_named() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    ClusterCerts::generate(None, &[NodeId(1)]).unwrap().write_to_dir(a.path()).unwrap();
    ClusterCerts::generate(None, &[NodeId(1)]).unwrap().write_to_dir(b.path()).unwrap();
    let file = |dir: &tempfile::TempDir, name: &str| dir.path().join(name);

    // Node 1's key from another run of `raftwal certs`: refused at load, naming both files.
    std::fs::copy(file(&b, "node-1.key.pem"), file(&a, "node-1.key.pem")).unwrap();
    let e = TlsIdentity::load_node(a.path(), NodeId(1)).unwrap_err().to_string();
    let key = file(&a, "node-1.key.pem").display().to_string();
    let cert = file(&a, "node-1.pem").display().to_string();
    assert!(e.contains(&format!("the key {key} does not match the certificate {cert}")), "{e}");
    assert!(!e.contains("KeyMismatch"), "{e}");
    // The same for the client's files.
    std::fs::copy(file(&b, "client.key.pem"), file(&a, "client.key.pem")).unwrap();
    let e = TlsIdentity::load_client(a.path()).unwrap_err().to_string();
    assert!(e.contains("does not match the certificate") && e.contains("client.pem"), "{e}");

    // A certificate file without a certificate: the file is named.
    std::fs::write(file(&b, "node-1.pem"), "not a certificate\n").unwrap();
    let e = TlsIdentity::load_node(b.path(), NodeId(1)).unwrap_err().to_string();
    let cert = file(&b, "node-1.pem").display().to_string();
    assert_eq!(e, format!("invalid PEM in certificate {cert}: no certificate"));
    std::fs::write(file(&b, "ca.pem"), "").unwrap();
    let e = TlsIdentity::load_node(b.path(), NodeId(1)).unwrap_err().to_string();
    assert!(e.contains("CA certificate") && e.contains("ca.pem"), "{e}");
}

#[test]
fn a_cluster_id_file_or_certificate_of_another_run_is_named() {
    let a = tempfile::tempdir().unwrap();
    let certs = ClusterCerts::generate(None, &[NodeId(1), NodeId(2)]).unwrap();
    certs.write_to_dir(a.path()).unwrap();
    let file = |name: &str| a.path().join(name);

    // Node 2's certificate and key copied as node 1's: node 1's name is missing.
    std::fs::copy(file("node-2.pem"), file("node-1.pem")).unwrap();
    std::fs::copy(file("node-2.key.pem"), file("node-1.key.pem")).unwrap();
    let e = TlsIdentity::load_node(a.path(), NodeId(1)).unwrap_err().to_string();
    let cluster = format!("{:016x}", certs.cluster.get());
    let cert = file("node-1.pem").display().to_string();
    assert!(e.contains(&format!("{cert} is not valid for n1.c{cluster}.raftwal")), "{e}");

    // A cluster-id file of another run: the node and the client refuse to load, naming it,
    // instead of starting under a cluster id their certificates do not carry.
    std::fs::write(file("cluster-id"), "1234567890abcdef\n").unwrap();
    let e = TlsIdentity::load_node(a.path(), NodeId(2)).unwrap_err().to_string();
    let id_file = file("cluster-id").display().to_string();
    assert!(e.contains("is not valid for n2.c1234567890abcdef.raftwal"), "{e}");
    assert!(e.contains(&format!("{id_file} (1234567890abcdef)")), "{e}");
    let e = TlsIdentity::load_client(a.path()).unwrap_err().to_string();
    assert!(e.contains("is not valid for client.c1234567890abcdef.raftwal"), "{e}");
}
