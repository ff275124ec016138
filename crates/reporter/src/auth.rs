//! Who may call the Report API, decided by the Kubernetes API the way
//! kube-rbac-proxy decides it. Observes the `authorization: Bearer <token>`
//! metadata of each call; writes a TokenReview (is this a token for our
//! audience, and whose?) and a SubjectAccessReview (may that user `create`
//! `servicecertificates/report` in API group `certflow.io` in the namespace
//! the report is about?); never logs, stores or echoes a token: the only
//! trace it keeps is the SHA-256 of an accepted one, as a cache key for
//! [`CACHE_TTL`].
//!
//! There is no switch to turn this off.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, UserInfo};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use tonic::metadata::MetadataMap;
use tracing::info;

use crate::Error;

/// The audience a caller's token must carry unless `--grpc-token-audience`
/// names another.
pub const DEFAULT_AUDIENCE: &str = "certflow-reporter";

/// The permission a caller needs in the namespace a report is about: verb
/// `create` on the subresource `report` of `servicecertificates` in API
/// group `certflow.io`. The subresource is virtual (no API serves it); it
/// exists so that RBAC can grant it.
pub const REPORT_VERB: &str = "create";
pub const REPORT_GROUP: &str = "certflow.io";
pub const REPORT_RESOURCE: &str = "servicecertificates";
pub const REPORT_SUBRESOURCE: &str = "report";

/// A ServiceAccount token is about 1 KiB; anything far larger is not one.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// How long an accepted token is trusted without asking the API again. A
/// token revoked meanwhile (its ServiceAccount or Pod deleted) is still
/// accepted for at most this long; permission is checked on every call.
pub const CACHE_TTL: Duration = Duration::from_secs(60);

/// Accepted tokens remembered at most; when full and nothing has expired,
/// new ones are simply not remembered.
pub const CACHE_CAPACITY: usize = 1024;

/// The bearer token in a call's metadata, or what is wrong with it.
pub fn bearer_token(metadata: &MetadataMap) -> Result<&str, &'static str> {
    let value = metadata
        .get("authorization")
        .ok_or("the call has no authorization metadata")?
        .to_str()
        .map_err(|_| "the authorization metadata is not printable ASCII")?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or("the authorization metadata is not of the form \"Bearer <token>\"")?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err("the authorization scheme is not Bearer");
    }
    let token = token.trim_start_matches(' ');
    if token.is_empty() {
        return Err("the bearer token is empty");
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err("the bearer token is longer than any ServiceAccount token");
    }
    if !token.bytes().all(is_token_byte) {
        return Err("the bearer token has characters no token has");
    }
    Ok(token)
}

/// RFC 6750's `b64token`: what a JWT (and any bearer token) is made of.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~+/=".contains(&byte)
}

/// Authenticates and authorizes Report callers against the Kubernetes API.
pub struct Guard {
    client: kube::Client,
    audience: String,
    accepted: Mutex<TokenCache>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("audience", &self.audience)
            .field("tokens_remembered", &self.cache().entries.len())
            .finish_non_exhaustive()
    }
}

impl Guard {
    pub fn new(client: kube::Client, audience: impl Into<String>) -> Self {
        Self {
            client,
            audience: audience.into(),
            accepted: Mutex::new(TokenCache::default()),
        }
    }

    /// The user whose token the call carries, if the API accepts it for
    /// this reporter's audience; [`Error::Unauthenticated`] otherwise.
    pub async fn authenticate(&self, metadata: &MetadataMap) -> Result<UserInfo, Error> {
        let token = bearer_token(metadata).map_err(|problem| self.unauthenticated(problem))?;
        let key = TokenCache::key(token);
        if let Some(user) = self.cache().get(&key, Instant::now()) {
            return Ok(user);
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                audiences: Some(vec![self.audience.clone()]),
                token: token.to_owned(),
            },
            ..TokenReview::default()
        };
        let status = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(Error::kube("creating a TokenReview"))?
            .status
            .unwrap_or_default();
        // An authenticator that ignores audiences answers without ours;
        // such a token was not meant for this reporter.
        let for_us = status
            .audiences
            .iter()
            .flatten()
            .any(|audience| *audience == self.audience);
        // Every Event a call writes names its caller, so a user without a
        // name (no authenticator gives one, but nothing forbids it) is not
        // let in.
        let named = |user: &UserInfo| user.username.as_deref().is_some_and(|n| !n.is_empty());
        match status.user {
            Some(user) if status.authenticated == Some(true) && for_us && named(&user) => {
                self.cache().insert(key, user.clone(), Instant::now());
                Ok(user)
            }
            _ => {
                // The API's reason (e.g. the token's audiences) helps the
                // operator; it never contains the token.
                info!(
                    error = status.error.as_deref().unwrap_or_default(),
                    "a Report call's token was not accepted"
                );
                Err(self.unauthenticated(
                    "the Kubernetes API did not accept the bearer token for this audience \
                     (expired, revoked, or issued for another audience)",
                ))
            }
        }
    }

    /// Ok if `user` may report about `namespace`; [`Error::PermissionDenied`]
    /// otherwise. Asked on every call, so a revoked grant takes effect at once.
    pub async fn authorize(&self, user: &UserInfo, namespace: &str) -> Result<(), Error> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username.clone(),
                uid: user.uid.clone(),
                groups: user.groups.clone(),
                extra: user.extra.clone(),
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(namespace.to_owned()),
                    verb: Some(REPORT_VERB.to_owned()),
                    group: Some(REPORT_GROUP.to_owned()),
                    resource: Some(REPORT_RESOURCE.to_owned()),
                    subresource: Some(REPORT_SUBRESOURCE.to_owned()),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let allowed = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(Error::kube("creating a SubjectAccessReview"))?
            .status
            .is_some_and(|status| status.allowed);
        if allowed {
            Ok(())
        } else {
            Err(Error::PermissionDenied {
                user: user.username.clone().unwrap_or_default(),
                namespace: namespace.to_owned(),
            })
        }
    }

    fn unauthenticated(&self, problem: &str) -> Error {
        Error::Unauthenticated {
            problem: problem.to_owned(),
            audience: self.audience.clone(),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, TokenCache> {
        self.accepted.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Accepted tokens by SHA-256, each with the user it names and when to ask
/// again.
#[derive(Debug, Default)]
struct TokenCache {
    entries: HashMap<[u8; 32], (UserInfo, Instant)>,
}

impl TokenCache {
    fn key(token: &str) -> [u8; 32] {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let mut key = [0; 32];
        key.copy_from_slice(digest.as_ref());
        key
    }

    fn get(&mut self, key: &[u8; 32], now: Instant) -> Option<UserInfo> {
        let (user, until) = self.entries.get(key)?;
        if *until > now {
            return Some(user.clone());
        }
        self.entries.remove(key);
        None
    }

    fn insert(&mut self, key: [u8; 32], user: UserInfo, now: Instant) {
        if self.entries.len() >= CACHE_CAPACITY {
            self.entries.retain(|_, (_, until)| *until > now);
        }
        if self.entries.len() < CACHE_CAPACITY {
            self.entries.insert(key, (user, now + CACHE_TTL));
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic::metadata::MetadataValue;

    use super::*;

    /// A token of the shape the API server issues (three base64url parts).
    const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOlsiY2VydGZsb3ctcmVwb3J0ZXIiXX0.c2lnbmF0dXJl";

    fn metadata(authorization: Option<&str>) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        if let Some(value) = authorization {
            let value = MetadataValue::try_from(value)
                .unwrap_or_else(|err| panic!("{value:?} is not a metadata value: {err}"));
            metadata.insert("authorization", value);
        }
        metadata
    }

    #[test]
    fn a_bearer_token_is_taken_from_the_authorization_metadata() {
        for value in [
            format!("Bearer {TOKEN}"),
            format!("bearer {TOKEN}"),
            format!("BEARER  {TOKEN}"),
        ] {
            assert_eq!(bearer_token(&metadata(Some(&value))), Ok(TOKEN), "{value}");
        }
    }

    #[test]
    fn missing_or_malformed_authorization_is_refused_without_quoting_the_token() {
        let cases = [
            ("no metadata", None),
            ("no scheme", Some(TOKEN.to_owned())),
            ("basic", Some(format!("Basic {TOKEN}"))),
            ("empty token", Some("Bearer ".to_owned())),
            ("only the scheme", Some("Bearer".to_owned())),
            ("two words", Some(format!("Bearer {TOKEN} {TOKEN}"))),
            ("a quote", Some(format!("Bearer \"{TOKEN}\""))),
            (
                "too long",
                Some(format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1))),
            ),
        ];
        for (what, value) in cases {
            let metadata = metadata(value.as_deref());
            let problem = bearer_token(&metadata);
            let Err(problem) = problem else {
                panic!("{what}: accepted {problem:?}");
            };
            assert!(!problem.contains(TOKEN), "{what}: {problem}");
        }
    }

    #[test]
    fn a_binary_authorization_value_is_refused() {
        let mut metadata = MetadataMap::new();
        let value = MetadataValue::try_from(&b"Bearer \xff"[..])
            .unwrap_or_else(|err| panic!("a header value: {err}"));
        metadata.insert("authorization", value);
        assert!(bearer_token(&metadata).is_err());
    }

    fn user(name: &str) -> UserInfo {
        UserInfo {
            username: Some(name.to_owned()),
            ..UserInfo::default()
        }
    }

    #[test]
    fn an_accepted_token_is_remembered_for_a_minute_by_its_digest() {
        let mut cache = TokenCache::default();
        let start = Instant::now();
        let key = TokenCache::key(TOKEN);
        assert_ne!(key, TokenCache::key("another-token"));
        cache.insert(key, user("a"), start);
        let later = start + CACHE_TTL - Duration::from_secs(1);
        assert_eq!(cache.get(&key, later), Some(user("a")));
        assert_eq!(cache.get(&key, start + CACHE_TTL), None);
        assert!(cache.entries.is_empty(), "an expired entry is dropped");
    }

    #[test]
    fn the_cache_never_holds_more_than_its_capacity() {
        let mut cache = TokenCache::default();
        let start = Instant::now();
        for n in 0..CACHE_CAPACITY + 10 {
            cache.insert(TokenCache::key(&n.to_string()), user("a"), start);
        }
        assert_eq!(cache.entries.len(), CACHE_CAPACITY);
        // Once the old entries expire, a new token finds room again.
        let new = TokenCache::key("new");
        cache.insert(new, user("b"), start + CACHE_TTL);
        assert_eq!(cache.entries.len(), 1);
        assert_eq!(cache.get(&new, start + CACHE_TTL), Some(user("b")));
    }

    /// A Guard whose API server is a closed loopback port.
    fn guard_without_api_server() -> Guard {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|err| panic!("bind: {err}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|err| panic!("addr: {err}"))
            .port();
        drop(listener);
        let url = format!("http://127.0.0.1:{port}")
            .parse()
            .unwrap_or_else(|err| panic!("url: {err}"));
        let client = kube::Client::try_from(kube::Config::new(url))
            .unwrap_or_else(|err| panic!("client: {err}"));
        Guard::new(client, DEFAULT_AUDIENCE)
    }

    #[tokio::test]
    async fn an_unreachable_api_server_makes_the_call_unavailable_and_a_missing_token_does_not_ask_it()
     {
        let guard = guard_without_api_server();
        let missing = guard.authenticate(&metadata(None)).await;
        let Err(missing) = missing else {
            panic!("authenticated without a token: {missing:?}");
        };
        assert_eq!(
            crate::grpc::status(&missing).code(),
            tonic::Code::Unauthenticated
        );
        assert!(missing.to_string().contains(DEFAULT_AUDIENCE), "{missing}");

        let bearer = format!("Bearer {TOKEN}");
        let unreachable = guard.authenticate(&metadata(Some(&bearer))).await;
        let Err(unreachable) = unreachable else {
            panic!("authenticated without an API server: {unreachable:?}");
        };
        let status = crate::grpc::status(&unreachable);
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert!(!status.message().contains(TOKEN), "{status:?}");

        let denied = guard.authorize(&user("someone"), "shop").await;
        let Err(denied) = denied else {
            panic!("authorized without an API server");
        };
        assert_eq!(
            crate::grpc::status(&denied).code(),
            tonic::Code::Unavailable
        );
    }
}
