//! Requests the API server has served, from its own `/metrics`
//! (`apiserver_request_total`). The counter carries verb, resource and
//! response code but not the client, so a figure covers every client of the
//! local control plane: certflow's services, kube-controller-manager, the
//! API server's own loopback client and the benchmark driver. Scenarios
//! subtract a baseline measured without certflow where that matters.

use std::collections::BTreeMap;

use kube::Client;

const REQUEST_TOTAL: &str = "apiserver_request_total";

/// Verb and resource of a group of requests, e.g. `PATCH secrets`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Kind {
    pub verb: String,
    /// `resource` or `resource/subresource`; empty for non-resource URLs
    /// such as `/version` or `/metrics`.
    pub resource: String,
}

impl Kind {
    /// Whether the request changes state. GET, LIST and WATCH read; every
    /// other verb (POST, PUT, PATCH, APPLY, DELETE, …) writes.
    pub fn is_write(&self) -> bool {
        !matches!(self.verb.as_str(), "GET" | "LIST" | "WATCH" | "WATCHLIST")
    }
}

/// Requests counted so far (or between two snapshots), by verb and resource.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestCounts(BTreeMap<Kind, f64>);

impl RequestCounts {
    /// The API server's counters now.
    pub async fn fetch(client: &Client) -> anyhow::Result<Self> {
        let request = http::Request::get("/metrics").body(Vec::new())?;
        let text = client.request_text(request).await?;
        Ok(Self::parse(&text))
    }

    /// Sums `apiserver_request_total` samples of Prometheus text by verb and
    /// resource (response codes, groups and scopes merged).
    pub fn parse(text: &str) -> Self {
        let mut counts = BTreeMap::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(REQUEST_TOTAL) else {
                continue;
            };
            let Some((labels, value)) = rest.strip_prefix('{').and_then(|r| r.rsplit_once("} "))
            else {
                continue;
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            let labels = parse_labels(labels);
            let label = |name: &str| labels.get(name).cloned().unwrap_or_default();
            let subresource = label("subresource");
            // Non-resource requests (`/version`) carry their path as subresource.
            let resource = match (label("resource"), subresource.is_empty()) {
                (resource, true) => resource,
                (resource, false) if resource.is_empty() => subresource,
                (resource, false) => format!("{resource}/{subresource}"),
            };
            let kind = Kind {
                verb: label("verb"),
                resource,
            };
            *counts.entry(kind).or_insert(0.0) += value;
        }
        Self(counts)
    }

    /// What was counted after `earlier` (kinds that did not grow are left out).
    pub fn since(&self, earlier: &Self) -> Self {
        let counts = self
            .0
            .iter()
            .map(|(kind, now)| (kind, now - earlier.0.get(kind).copied().unwrap_or(0.0)))
            .filter(|(_, delta)| *delta > 0.0)
            .map(|(kind, delta)| (kind.clone(), delta))
            .collect();
        Self(counts)
    }

    /// These counts without requests for `resource` (e.g. the benchmark's
    /// own `/metrics` reads).
    pub fn without_resource(mut self, resource: &str) -> Self {
        self.0.retain(|kind, _| kind.resource != resource);
        self
    }

    /// Requests of one verb and resource (`resource/subresource` for a
    /// subresource).
    pub fn count(&self, verb: &str, resource: &str) -> f64 {
        self.sum(|kind| kind.verb == verb && kind.resource == resource)
    }

    pub fn reads(&self) -> f64 {
        self.sum(|kind| !kind.is_write())
    }

    pub fn writes(&self) -> f64 {
        self.sum(Kind::is_write)
    }

    /// Writes to any of `resources` (subresources included: `secrets`
    /// counts `secrets/status` too).
    pub fn writes_to(&self, resources: &[&str]) -> f64 {
        self.sum(|kind| {
            let resource = kind.resource.split('/').next().unwrap_or_default();
            kind.is_write() && resources.contains(&resource)
        })
    }

    pub fn total(&self) -> f64 {
        self.sum(|_| true)
    }

    fn sum(&self, which: impl Fn(&Kind) -> bool) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| which(k))
            // From +0.0: an empty f64 `sum()` is -0.0, which prints as "-0".
            .fold(0.0, |total, (_, n)| total + n)
    }

    /// Every kind with its count, for the JSON results.
    pub fn breakdown(&self) -> Vec<Counted> {
        self.0
            .iter()
            .map(|(kind, count)| Counted {
                verb: kind.verb.clone(),
                resource: kind.resource.clone(),
                count: *count,
            })
            .collect()
    }
}

/// One line of a [`RequestCounts::breakdown`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct Counted {
    pub verb: String,
    pub resource: String,
    pub count: f64,
}

/// `a="x",b="y"` into a map; values in this metric hold no quotes or commas
/// that need unescaping beyond `\"`.
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((name, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => value.extend(chars.next().map(|(_, c)| c)),
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.insert(name.trim_start_matches(',').to_owned(), value);
        rest = &after[end..];
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP apiserver_request_total [STABLE] Counter of apiserver requests
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="secrets",scope="namespace",subresource="",verb="GET",version="v1"} 7
apiserver_request_total{code="404",component="apiserver",dry_run="",group="",resource="secrets",scope="namespace",subresource="",verb="GET",version="v1"} 3
apiserver_request_total{code="200",component="apiserver",dry_run="",group="certflow.io",resource="servicecertificates",scope="namespace",subresource="status",verb="PATCH",version="v1alpha1"} 5
apiserver_request_total{code="0",component="apiserver",dry_run="",group="",resource="pods",scope="namespace",subresource="",verb="WATCH",version="v1"} 2
apiserver_request_total{code="200",component="",dry_run="",group="",resource="",scope="",subresource="/version",verb="GET",version=""} 1
apiserver_request_duration_seconds_bucket{verb="GET",le="0.1"} 99
"#;

    #[test]
    fn requests_are_summed_by_verb_and_resource_across_codes() {
        let counts = RequestCounts::parse(TEXT);
        let breakdown: Vec<(String, String, f64)> = counts
            .breakdown()
            .into_iter()
            .map(|c| (c.verb, c.resource, c.count))
            .collect();
        assert_eq!(
            breakdown,
            vec![
                ("GET".into(), "/version".into(), 1.0),
                ("GET".into(), "secrets".into(), 10.0),
                ("PATCH".into(), "servicecertificates/status".into(), 5.0),
                ("WATCH".into(), "pods".into(), 2.0),
            ]
        );
        assert_eq!(counts.count("GET", "secrets"), 10.0);
        assert_eq!(counts.count("PATCH", "servicecertificates/status"), 5.0);
        assert_eq!(counts.count("PATCH", "servicecertificates"), 0.0);
        assert_eq!(counts.reads(), 13.0);
        assert_eq!(counts.writes(), 5.0);
        assert_eq!(counts.writes_to(&["servicecertificates"]), 5.0);
        assert_eq!(counts.writes_to(&["secrets", "pods"]), 0.0);
    }

    #[test]
    fn a_difference_keeps_only_what_grew() {
        let before = RequestCounts::parse(TEXT);
        let after = RequestCounts::parse(&TEXT.replace("} 5\n", "} 9\n"));
        let delta = after.since(&before);
        assert_eq!(delta.writes(), 4.0);
        assert_eq!(delta.reads(), 0.0);
        assert_eq!(delta.breakdown().len(), 1);
    }
}
