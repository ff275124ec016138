//! `deploy/optional/prometheus/prometheusrule.yaml` as Prometheus would read
//! it: every expression parses as PromQL, and every metric it reads is one
//! certflow documents in `docs/metrics.md` (a renamed or misspelt metric
//! makes an alert that never fires). That the documented expiry metrics are
//! really exported, with the Secrets' values, is `tests/e2e/expiry_metrics.rs`.

use std::collections::BTreeSet;
use std::path::Path;

use promql_parser::parser::{self, Expr};
use promql_parser::util::{ExprVisitor, walk_expr};
use serde_json::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The metric names an expression selects.
#[derive(Default)]
struct Selected(BTreeSet<String>);

impl ExprVisitor for Selected {
    type Error = String;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, Self::Error> {
        let selector = match expr {
            Expr::VectorSelector(selector) => Some(selector),
            Expr::MatrixSelector(matrix) => Some(&matrix.vs),
            _ => None,
        };
        if let Some(name) = selector.and_then(|selector| selector.name.clone()) {
            self.0.insert(name);
        }
        Ok(true)
    }
}

/// The metric names in the first column of `docs/metrics.md`'s tables.
fn documented_metrics() -> BTreeSet<String> {
    let text =
        std::fs::read_to_string(Path::new(ROOT).join("docs/metrics.md")).expect("docs/metrics.md");
    text.lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .map(str::to_owned)
        .collect()
}

/// Every alerting rule's (name, expression).
fn rules() -> Vec<(String, String)> {
    let path = Path::new(ROOT).join("deploy/optional/prometheus/prometheusrule.yaml");
    let text = std::fs::read_to_string(&path).expect("the PrometheusRule");
    let rule: Value = serde_yaml::from_str(&text).expect("the PrometheusRule is YAML");
    let groups = rule["spec"]["groups"].as_array().expect("spec.groups");
    groups
        .iter()
        .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
        .map(|rule| {
            (
                rule["alert"].as_str().unwrap_or_default().to_owned(),
                rule["expr"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn every_alert_parses_and_reads_only_documented_metrics() {
    let documented = documented_metrics();
    assert!(
        documented.contains("certflow_certificate_expiration_timestamp_seconds"),
        "the table parser found: {documented:?}"
    );
    let rules = rules();
    assert!(rules.len() >= 6, "{rules:?}");
    let mut problems = Vec::new();
    for (alert, expr) in &rules {
        if alert.is_empty() {
            problems.push(format!("a rule without an alert name: {expr}"));
        }
        let parsed = match parser::parse(expr) {
            Ok(parsed) => parsed,
            Err(error) => {
                problems.push(format!("{alert}: {error}"));
                continue;
            }
        };
        let mut selected = Selected::default();
        if let Err(error) = walk_expr(&mut selected, &parsed) {
            problems.push(format!("{alert}: {error}"));
        }
        if selected.0.is_empty() {
            problems.push(format!("{alert} reads no metric"));
        }
        for metric in selected.0.difference(&documented) {
            problems.push(format!(
                "{alert} reads {metric}, which docs/metrics.md does not list"
            ));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_rule_parser_notices_a_broken_expression() {
    assert!(parser::parse("certflow_ca_ready_status{condition=").is_err());
    let mut selected = Selected::default();
    let parsed = parser::parse("rate(certflow_signer_dead_letters_total[5m]) > 0").expect("valid");
    walk_expr(&mut selected, &parsed).expect("walks");
    assert_eq!(
        selected.0,
        BTreeSet::from(["certflow_signer_dead_letters_total".to_owned()])
    );
}
