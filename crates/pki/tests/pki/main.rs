//! Integration tests for certflow-pki, one binary so the suite links once.

mod arbitrary_input;
mod cross_sign;
mod issuance;
mod openssl;
mod redaction;
mod sub_ca;
mod support;
