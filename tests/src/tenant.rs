//! One test's tenant: a fresh namespace, the certflow services serving it,
//! and a generated CertificateAuthority to sign with. Test files wrap it in
//! their own `Fixture` (which derefs to it) for the helpers only they need.

use certflow_api::{IssuerPolicy, ServiceCertificate, ServiceCertificateSpec};
use certflow_testenv::TestEnv;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Secret;
use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;

use crate::eventually;
use crate::fixtures::create_generated_ca;
use crate::services::Services;

/// A namespace with a watcher, signers and a reporter, and a CA.
pub struct Tenant {
    pub env: &'static TestEnv,
    pub client: Client,
    pub services: Services,
    /// The generated CertificateAuthority's name.
    pub issuer: String,
}

impl std::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenant")
            .field("services", &self.services)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl Tenant {
    /// Starts building a tenant whose namespace name begins with `prefix`.
    pub fn builder(prefix: &str) -> TenantBuilder<'_> {
        TenantBuilder {
            prefix,
            signers: 1,
            reporter_args: &[],
            common_args: &[],
            issuer_prefix: "ca",
            policy: None,
        }
    }

    pub fn namespace(&self) -> &str {
        &self.services.namespace
    }

    /// `K` objects in the tenant's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + DeserializeOwned,
    {
        Api::namespaced(self.client.clone(), self.namespace())
    }

    pub fn scerts(&self) -> Api<ServiceCertificate> {
        self.api()
    }

    pub fn secrets(&self) -> Api<Secret> {
        self.api()
    }

    /// `kubectl apply` of ServiceCertificate `name` with `spec`.
    pub async fn apply(&self, name: &str, spec: ServiceCertificateSpec) -> ServiceCertificate {
        let scert = ServiceCertificate::new(name, spec);
        self.scerts()
            .patch(
                name,
                &PatchParams::apply("e2e").force(),
                &Patch::Apply(&scert),
            )
            .await
            .expect("apply ServiceCertificate")
    }

    /// The note of the Warning Event certflow-reporter wrote for `reason`
    /// about the object `uid` (`what` names it in the failure message), once
    /// it exists within `wait`.
    pub async fn certflow_warning(
        &self,
        uid: &str,
        reason: &str,
        what: &str,
        wait: Duration,
    ) -> String {
        let events: Api<Event> = self.api();
        let fields = format!("regarding.uid={uid},reportingController=certflow-reporter");
        let waiting_for = format!("a {reason} Warning about {what}\n{}", self.services.logs());
        eventually(&waiting_for, wait, || async {
            let list = events
                .list(&ListParams::default().fields(&fields))
                .await
                .ok()?;
            list.items
                .into_iter()
                .find(|e| {
                    e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some(reason)
                })
                .and_then(|e| e.note)
        })
        .await
    }
}

/// How to start a [`Tenant`]; defaults: one signer, no extra flags, a CA
/// named `ca-…` without a policy (any name, no CA certificates).
#[derive(Debug)]
pub struct TenantBuilder<'a> {
    prefix: &'a str,
    signers: usize,
    reporter_args: &'a [&'a str],
    common_args: &'a [&'a str],
    issuer_prefix: &'a str,
    policy: Option<IssuerPolicy>,
}

impl<'a> TenantBuilder<'a> {
    pub fn signers(mut self, signers: usize) -> Self {
        self.signers = signers;
        self
    }

    /// Extra flags for the reporter.
    pub fn reporter_args(mut self, args: &'a [&'a str]) -> Self {
        self.reporter_args = args;
        self
    }

    /// Extra flags for every service (e.g. the bus retry schedule, which all
    /// of them must agree on).
    pub fn common_args(mut self, args: &'a [&'a str]) -> Self {
        self.common_args = args;
        self
    }

    /// The CA's name starts with `prefix` instead of `ca`.
    pub fn issuer_prefix(mut self, prefix: &'a str) -> Self {
        self.issuer_prefix = prefix;
        self
    }

    /// The CA's policy; `None` (the default) allows any name and no CA
    /// certificates.
    pub fn policy(mut self, policy: impl Into<Option<IssuerPolicy>>) -> Self {
        self.policy = policy.into();
        self
    }

    pub async fn start(self) -> Tenant {
        let env = certflow_testenv::shared();
        let namespace = env.create_namespace(self.prefix).await.expect("namespace");
        let client = env.client().await.expect("client");
        let services = Services::launch(
            env,
            &namespace,
            self.signers,
            self.reporter_args,
            self.common_args,
        )
        .await;
        let issuer = certflow_testenv::unique_name(self.issuer_prefix);
        create_generated_ca(&client, &issuer, self.policy)
            .await
            .expect("create CertificateAuthority");
        Tenant {
            env,
            client,
            services,
            issuer,
        }
    }
}

/// Declares `struct $name(Tenant)`, dereferencing to the [`Tenant`], so a
/// test file can add the helpers only it needs in `impl $name { ... }` and
/// still call the tenant's own (`fx.scerts()`, `fx.services`, ...).
#[macro_export]
macro_rules! tenant_fixture {
    ($name:ident) => {
        struct $name($crate::tenant::Tenant);

        impl ::std::ops::Deref for $name {
            type Target = $crate::tenant::Tenant;
            fn deref(&self) -> &Self::Target {
                &self.0
            }
        }

        impl ::std::ops::DerefMut for $name {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.0
            }
        }
    };
}
