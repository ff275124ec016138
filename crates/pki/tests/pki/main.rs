//! Integration tests for certflow-pki, one binary so the suite links once.

mod arbitrary_input;
mod issuance;
mod openssl;
mod redaction;
mod support;
