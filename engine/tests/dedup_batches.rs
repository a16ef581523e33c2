//! Deduplication of retried AppendBatch requests: a retry is acknowledged only when the whole
//! batch is in the log where the acknowledgement says, never on the strength of its first item
//! alone.
//!
//! The real trigger is a leader change after only a prefix of a batch reached a majority (an
//! AppendEntries may end inside a batch, and the commit index with it); a retry then finds its
//! first item committed and the rest missing. This test produces the same state without timing:
//! a "retry" that carries one more item than the batch that was applied.

// Test code: a failed unwrap is the test's failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use raftwal_wire::client::{
    AppendBatchRequest, AppendRequest, ClientId, ClientRequest, ClientResponse, ClientSeq,
    ErrorCode, TaggedPayload,
};
use raftwal_wire::types::{LogId, LogIndex};
use std::time::Duration;
use support::Cluster;

fn item(seq: u64, data: &'static str) -> TaggedPayload {
    TaggedPayload::new(ClientId(9), ClientSeq(seq), Bytes::from_static(data.as_bytes()))
}

fn batch(items: Vec<TaggedPayload>) -> ClientRequest {
    ClientRequest::AppendBatch(AppendBatchRequest { log: LogId(0), items })
}

#[test]
fn a_retried_batch_is_acknowledged_only_when_all_of_it_is_in_the_log() {
    let cluster = Cluster::start(3);
    let leader = cluster.wait_leader(Duration::from_secs(20));
    let addr = cluster.configs[(leader - 1) as usize].listen;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let endpoint = cluster.client_endpoint();
        let connection = endpoint.connect(addr).await.unwrap();

        let applied = match connection.request(&batch(vec![item(1, "a"), item(2, "b")])).await {
            Ok(ClientResponse::AppendedBatch(a)) => a,
            other => panic!("expected AppendedBatch, got {other:?}"),
        };
        assert_eq!(applied.count, 2);
        // An exact retry is answered with the first position.
        match connection.request(&batch(vec![item(1, "a"), item(2, "b")])).await {
            Ok(ClientResponse::AppendedBatch(again)) => assert_eq!(again, applied),
            other => panic!("expected AppendedBatch, got {other:?}"),
        }
        // A retry of one applied item alone is answered with its own position.
        let single = ClientRequest::Append(AppendRequest { log: LogId(0), tagged: item(2, "b") });
        match connection.request(&single).await {
            Ok(ClientResponse::Appended(a)) => assert_eq!(a.index, applied.first_index.next()),
            other => panic!("expected Appended, got {other:?}"),
        }
        // The first item is committed but the last is not in the log: acknowledging three
        // entries from the first one's index would name an entry that is not this batch's.
        let partial = batch(vec![item(1, "a"), item(2, "b"), item(3, "c")]);
        match connection.request(&partial).await {
            Ok(ClientResponse::Error(e)) => {
                assert_eq!(e.code, ErrorCode::InvalidRequest);
                assert!(e.message.contains("only part of this batch"), "{}", e.message);
            }
            other => panic!("a partial batch must not be acknowledged, got {other:?}"),
        }
    });
    let entries = cluster.log(leader).read_blocking(LogIndex(1), raftwal::ReadLimit::entries(10));
    let data: Vec<Bytes> = entries.unwrap().into_iter().map(|e| e.data).collect();
    assert_eq!(data, [Bytes::from_static(b"a"), Bytes::from_static(b"b")]);
}
