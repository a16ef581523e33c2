//! Handshake limits over loopback QUIC: with many handshakes in progress, a connection attempt
//! from an address QUIC has not validated is answered with a stateless Retry (a real client
//! answers it and connects; a spoofed flood holds no state), and beyond the maximum, attempts
//! are refused.

// Helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod support;

use raftwal_wire::client::*;
use raftwal_wire::codec::FrameLimits;
use raftwal_wire::tls::certs::ClusterCa;
use raftwal_wire::transport::*;
use raftwal_wire::types::*;
use support::*;

fn client(ca: &ClusterCa) -> ClientEndpoint {
    let tuning = QuicTuning::default();
    ClientEndpoint::open(&client_identity(ca), loopback(), &tuning, FrameLimits::default()).unwrap()
}

/// With the threshold at zero every first attempt gets a Retry: the client answers it with the
/// token, its address is then validated, and the connection goes through and serves requests.
#[tokio::test]
async fn a_client_answered_with_a_retry_still_connects() {
    let ca = ClusterCa::generate(None).unwrap();
    let mut config = fast_config(1, loopback());
    config.handshakes_before_retry = 0;
    let (node, mut events) = start(config, &node_identity(&ca, 1));
    let endpoint = client(&ca);
    let conn = endpoint.connect(node.local_addr().unwrap()).await.unwrap();
    let request = ClientRequest::Status(StatusRequest { log: LogId(1) });
    let answer_one = async {
        let event = wait_for(&mut events, |e| match e {
            TransportEvent::ClientRequest(r) => Some(r),
            _ => None,
        })
        .await;
        let answer = ClientResponse::NotLeader(NotLeader { log: LogId(1), leader: None });
        event.responder.respond(&answer).unwrap();
    };
    let (answer, ()) = tokio::join!(conn.request(&request), answer_one);
    assert!(matches!(answer.unwrap(), ClientResponse::NotLeader(_)));
    let stats = node.stats();
    assert_eq!(stats.handshake_retries, 1, "{stats:?}");
    assert_eq!(stats.handshakes_refused, 0, "{stats:?}");
}

/// With the maximum at zero, every attempt is refused before any handshake state is kept.
#[tokio::test]
async fn attempts_beyond_the_handshake_maximum_are_refused() {
    let ca = ClusterCa::generate(None).unwrap();
    let mut config = fast_config(1, loopback());
    config.handshakes_before_retry = usize::MAX;
    config.handshakes_max = 0;
    let (node, _events) = start(config, &node_identity(&ca, 1));
    let endpoint = client(&ca);
    let refused = endpoint.connect(node.local_addr().unwrap()).await;
    assert!(refused.is_err(), "the attempt must be refused");
    let stats = node.stats();
    assert!(stats.handshakes_refused >= 1, "{stats:?}");
    assert_eq!(stats.handshake_retries, 0, "{stats:?}");
}
