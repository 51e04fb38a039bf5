//! The part of etcd's v3 gRPC API the arbiter uses — `KV.Range`, `KV.Txn`
//! and `Auth.Authenticate` — as plain prost messages and tonic unary calls.
//!
//! Why not a generated client: etcd's `.proto` files need `protoc` (or a
//! protobuf compiler in a build script) to become Rust, and the release
//! build must need nothing beyond the Rust toolchain (a fresh machine has no
//! `protoc`). The arbiter needs eleven messages and three calls; they are
//! written out here with the field numbers of etcd's `api/etcdserverpb/rpc.proto`
//! and `api/mvccpb/kv.proto` (etcd 3.4 – 3.6, unchanged since 3.3). Fields the
//! arbiter never sets or reads are left out: protobuf decoders skip unknown
//! fields, and an absent field encodes as its default. The multi-process etcd
//! tests exercise every message against Debian's etcd.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::uri::PathAndQuery;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};
use tonic_prost::ProstCodec;

/// `mvccpb.KeyValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(int64, tag = "2")]
    pub create_revision: i64,
    #[prost(int64, tag = "3")]
    pub mod_revision: i64,
    #[prost(int64, tag = "4")]
    pub version: i64,
    #[prost(bytes = "vec", tag = "5")]
    pub value: Vec<u8>,
}

/// `etcdserverpb.RangeRequest`: `key` alone, or every key in
/// `[key, range_end)`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub range_end: Vec<u8>,
    #[prost(bool, tag = "8")]
    pub keys_only: bool,
}

/// `etcdserverpb.RangeResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeResponse {
    #[prost(message, repeated, tag = "2")]
    pub kvs: Vec<KeyValue>,
}

/// `etcdserverpb.PutRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `etcdserverpb.PutResponse` (nothing the arbiter reads).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PutResponse {}

/// `etcdserverpb.Compare`: `target` of `key` compared by `result` with the
/// value in `target_union`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Compare {
    /// `Compare.CompareResult`: [`Compare::EQUAL`].
    #[prost(int32, tag = "1")]
    pub result: i32,
    /// `Compare.CompareTarget`: [`Compare::CREATE`] or [`Compare::MOD`].
    #[prost(int32, tag = "2")]
    pub target: i32,
    #[prost(bytes = "vec", tag = "3")]
    pub key: Vec<u8>,
    #[prost(oneof = "CompareWith", tags = "5, 6")]
    pub target_union: Option<CompareWith>,
}

impl Compare {
    /// `CompareResult.EQUAL`.
    pub const EQUAL: i32 = 0;
    /// `CompareTarget.CREATE`: the key's create revision.
    pub const CREATE: i32 = 1;
    /// `CompareTarget.MOD`: the key's last modification's revision.
    pub const MOD: i32 = 2;

    /// True when `key` does not exist (its create revision is 0).
    pub fn absent(key: &str) -> Compare {
        let with = Some(CompareWith::CreateRevision(0));
        Compare { result: Self::EQUAL, target: Self::CREATE, key: key.into(), target_union: with }
    }

    /// True when `key` was last modified at `revision`.
    pub fn modified_at(key: &str, revision: i64) -> Compare {
        let with = Some(CompareWith::ModRevision(revision));
        Compare { result: Self::EQUAL, target: Self::MOD, key: key.into(), target_union: with }
    }
}

/// `Compare.target_union`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum CompareWith {
    #[prost(int64, tag = "5")]
    CreateRevision(i64),
    #[prost(int64, tag = "6")]
    ModRevision(i64),
}

/// `etcdserverpb.RequestOp`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RequestOp {
    #[prost(oneof = "Op", tags = "1, 2")]
    pub request: Option<Op>,
}

/// `RequestOp.request`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Op {
    #[prost(message, tag = "1")]
    Range(RangeRequest),
    #[prost(message, tag = "2")]
    Put(PutRequest),
}

impl RequestOp {
    pub fn get(key: &str) -> RequestOp {
        RequestOp { request: Some(Op::Range(RangeRequest { key: key.into(), ..Default::default() })) }
    }

    pub fn put(key: &str, value: Vec<u8>) -> RequestOp {
        RequestOp { request: Some(Op::Put(PutRequest { key: key.into(), value })) }
    }
}

/// `etcdserverpb.ResponseOp`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseOp {
    #[prost(oneof = "OpResponse", tags = "1, 2")]
    pub response: Option<OpResponse>,
}

/// `ResponseOp.response`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum OpResponse {
    #[prost(message, tag = "1")]
    Range(RangeResponse),
    #[prost(message, tag = "2")]
    Put(PutResponse),
}

/// `etcdserverpb.TxnRequest`: `IF every compare THEN success ELSE failure`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TxnRequest {
    #[prost(message, repeated, tag = "1")]
    pub compare: Vec<Compare>,
    #[prost(message, repeated, tag = "2")]
    pub success: Vec<RequestOp>,
    #[prost(message, repeated, tag = "3")]
    pub failure: Vec<RequestOp>,
}

/// `etcdserverpb.TxnResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TxnResponse {
    #[prost(bool, tag = "2")]
    pub succeeded: bool,
    #[prost(message, repeated, tag = "3")]
    pub responses: Vec<ResponseOp>,
}

/// `etcdserverpb.AuthenticateRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AuthenticateRequest {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub password: String,
}

/// `etcdserverpb.AuthenticateResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AuthenticateResponse {
    #[prost(string, tag = "2")]
    pub token: String,
}

/// How to reach one etcd member.
#[derive(Clone, Debug)]
pub struct Settings {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// HTTP/2 pings while idle, so a dead member is noticed between calls.
    pub keep_alive: Duration,
    /// `(user, password)`: every call carries a token from `Authenticate`.
    pub credentials: Option<(String, String)>,
    #[cfg(feature = "etcd-tls")]
    pub tls: Option<tonic::transport::ClientTlsConfig>,
}

/// A client of one etcd member. Clones share the HTTP/2 connection and the
/// auth token.
#[derive(Clone, Debug)]
pub struct Client {
    channel: Channel,
    settings: Arc<Settings>,
    /// The token of the last successful `Authenticate`; None without
    /// credentials, or before the first call.
    token: Arc<Mutex<Option<AsciiMetadataValue>>>,
}

/// etcd's answer to a call with an expired or revoked token.
const INVALID_TOKEN: &str = "invalid auth token";

impl Client {
    /// A client of `endpoint` (`HOST:PORT`). Contacts nobody: the connection
    /// is opened by the first call (a node may start while etcd is down).
    pub fn new(endpoint: &str, settings: Settings) -> Result<Client, String> {
        #[cfg(feature = "etcd-tls")]
        let scheme = if settings.tls.is_some() { "https" } else { "http" };
        #[cfg(not(feature = "etcd-tls"))]
        let scheme = "http";
        let uri = format!("{scheme}://{endpoint}");
        let bad = |e: tonic::transport::Error| format!("etcd endpoint {endpoint}: {}", chain(&e));
        let e = Endpoint::from_shared(uri)
            .map_err(bad)?
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(settings.keep_alive)
            .keep_alive_timeout(settings.keep_alive)
            .keep_alive_while_idle(true);
        #[cfg(feature = "etcd-tls")]
        let e = match &settings.tls {
            Some(tls) => e.tls_config(tls.clone()).map_err(bad)?,
            None => e,
        };
        Ok(Client { channel: e.connect_lazy(), settings: Arc::new(settings), token: Arc::default() })
    }

    /// `KV.Range` of one key, linearizable.
    pub async fn get(&self, key: &str) -> Result<RangeResponse, Status> {
        self.range(RangeRequest { key: key.into(), ..Default::default() }).await
    }

    /// `KV.Range`, linearizable.
    pub async fn range(&self, request: RangeRequest) -> Result<RangeResponse, Status> {
        self.authorized("/etcdserverpb.KV/Range", request).await
    }

    /// `KV.Put`.
    pub async fn put(&self, key: &str, value: Vec<u8>) -> Result<PutResponse, Status> {
        self.authorized("/etcdserverpb.KV/Put", PutRequest { key: key.into(), value }).await
    }

    /// `KV.Txn`.
    pub async fn txn(&self, request: TxnRequest) -> Result<TxnResponse, Status> {
        self.authorized("/etcdserverpb.KV/Txn", request).await
    }

    /// A call with the auth token when there are credentials: fetched before
    /// the first call, and again once when etcd says it expired.
    async fn authorized<Q, A>(&self, path: &'static str, request: Q) -> Result<A, Status>
    where
        Q: prost::Message + Clone + 'static,
        A: prost::Message + Default + 'static,
    {
        if self.settings.credentials.is_none() {
            return self.unary(path, request, None).await;
        }
        let cached = self.token.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let token = match cached {
            Some(t) => t,
            None => self.authenticate().await?,
        };
        match self.unary(path, request.clone(), Some(token)).await {
            Err(s) if s.code() == Code::Unauthenticated && s.message().contains(INVALID_TOKEN) => {
                let fresh = self.authenticate().await?;
                self.unary(path, request, Some(fresh)).await
            }
            other => other,
        }
    }

    /// `Auth.Authenticate`: a new token, kept for later calls.
    async fn authenticate(&self) -> Result<AsciiMetadataValue, Status> {
        let (name, password) = self.settings.credentials.clone().unwrap_or_default();
        let path = "/etcdserverpb.Auth/Authenticate";
        let resp: AuthenticateResponse = self.unary(path, AuthenticateRequest { name, password }, None).await?;
        let token: AsciiMetadataValue = MetadataValue::try_from(resp.token.as_str())
            .map_err(|_| Status::internal("etcd returned an auth token that is not ASCII"))?;
        *self.token.lock().unwrap_or_else(PoisonError::into_inner) = Some(token.clone());
        Ok(token)
    }

    async fn unary<Q, A>(&self, path: &'static str, request: Q, token: Option<AsciiMetadataValue>) -> Result<A, Status>
    where
        Q: prost::Message + 'static,
        A: prost::Message + Default + 'static,
    {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready().await.map_err(|e| Status::unavailable(chain(&e)))?;
        let mut request = Request::new(request);
        request.set_timeout(self.settings.request_timeout);
        let meta = request.metadata_mut();
        // A member cut off from its leader answers at once instead of
        // hanging, and the caller moves on to the next member.
        meta.insert("hasleader", MetadataValue::from_static("true"));
        if let Some(t) = token {
            meta.insert("token", t);
        }
        let codec = ProstCodec::<Q, A>::default();
        let response = grpc.unary(request, PathAndQuery::from_static(path), codec).await?;
        Ok(response.into_inner())
    }
}

/// An error with its sources, `a: b: c` (tonic's own `Display` says only
/// "transport error").
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        next = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// The encodings of the messages the arbiter sends, byte for byte as
    /// protoc's generated code writes them for etcd's schema: field
    /// number and wire type in each tag byte (`(number << 3) | type`).
    #[test]
    fn messages_encode_with_etcds_field_numbers() {
        let c = Compare::modified_at("k", 7);
        // result 0 and target... default 0 is omitted; target MOD = 2 (field 2 varint),
        // key (field 3, bytes), mod_revision (field 6, varint).
        assert_eq!(c.encode_to_vec(), [0x10, 2, 0x1a, 1, b'k', 0x30, 7]);
        let c = Compare::absent("k");
        // create_revision 0 is set explicitly inside the oneof: it is encoded.
        assert_eq!(c.encode_to_vec(), [0x10, 1, 0x1a, 1, b'k', 0x28, 0]);
        let put = RequestOp::put("k", b"v".to_vec());
        assert_eq!(put.encode_to_vec(), [0x12, 6, 0x0a, 1, b'k', 0x12, 1, b'v']);
        let get = RequestOp::get("k");
        assert_eq!(get.encode_to_vec(), [0x0a, 3, 0x0a, 1, b'k']);
        let txn = TxnRequest { compare: vec![], success: vec![get.clone()], failure: vec![get] };
        assert_eq!(txn.encode_to_vec(), [0x12, 5, 0x0a, 3, 0x0a, 1, b'k', 0x1a, 5, 0x0a, 3, 0x0a, 1, b'k']);
        let auth = AuthenticateRequest { name: "u".into(), password: "p".into() };
        assert_eq!(auth.encode_to_vec(), [0x0a, 1, b'u', 0x12, 1, b'p']);
    }

    /// A response as etcd sends it, with fields the arbiter does not model
    /// (the header, `more`, `count`, a key's lease): they are skipped.
    #[test]
    fn responses_decode_past_unknown_fields() {
        let kv = [0x0a, 1, b'k', 0x10, 3, 0x18, 5, 0x20, 2, 0x2a, 1, b'v', 0x30, 9];
        let header = [0x08, 1, 0x10, 2, 0x18, 5, 0x20, 1];
        let mut range = vec![0x0a, header.len() as u8];
        range.extend(header);
        range.extend([0x12, kv.len() as u8]);
        range.extend(kv);
        range.extend([0x18, 0, 0x20, 1]);
        let r = RangeResponse::decode(&range[..]).unwrap();
        let want = KeyValue { key: b"k".to_vec(), create_revision: 3, mod_revision: 5, version: 2, value: b"v".to_vec() };
        assert_eq!(r.kvs, [want]);

        let mut txn = vec![0x0a, header.len() as u8];
        txn.extend(header);
        txn.extend([0x10, 0, 0x1a, range.len() as u8 + 2, 0x0a, range.len() as u8]);
        txn.extend(&range);
        let t = TxnResponse::decode(&txn[..]).unwrap();
        assert!(!t.succeeded);
        assert_eq!(t.responses, [ResponseOp { response: Some(OpResponse::Range(r)) }]);
    }
}
