//! Checks on `spec.privateKey` that need no issuer: the size fits the algorithm.

use certflow_api::KeyAlgorithm;

use crate::reason::Reason;
use crate::violation::Violation;

/// Field path of the key size.
pub const KEY_SIZE_FIELD: &str = "spec.privateKey.size";

fn sizes(algorithm: KeyAlgorithm) -> String {
    let sizes: Vec<String> = algorithm
        .allowed_sizes()
        .iter()
        .map(u32::to_string)
        .collect();
    match sizes.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => "none".to_owned(),
    }
}

/// A key size the algorithm does not have: any size for Ed25519, an RSA size
/// with ECDSA (often because ECDSA is the default and `algorithm` was left
/// out), or an RSA key below 2048 bits.
///
/// `algorithm` is the field as written: `None` means the ECDSA default.
pub fn invalid_key_size(algorithm: Option<KeyAlgorithm>, size: Option<u32>) -> Option<Violation> {
    let size = size?;
    let effective = algorithm.unwrap_or_default();
    let allowed = effective.allowed_sizes();
    if allowed.contains(&size) {
        return None;
    }
    let value = size.to_string();
    let named = match algorithm {
        Some(algorithm) => format!("{algorithm}"),
        None => {
            format!("{effective}, the default algorithm when spec.privateKey.algorithm is not set")
        }
    };
    let violation =
        |message: String| Violation::new(Reason::InvalidKeySize, KEY_SIZE_FIELD, &value, message);
    if allowed.is_empty() {
        return Some(
            violation(format!("is set, but keys for {named} have a fixed size"))
                .with_suggestion("remove spec.privateKey.size"),
        );
    }
    let rsa = KeyAlgorithm::Rsa;
    let ecdsa = KeyAlgorithm::Ecdsa;
    let message = format!(
        "is not a key size for {named} ({effective} sizes: {})",
        sizes(effective)
    );
    Some(
        if effective == ecdsa && rsa.allowed_sizes().contains(&size) {
            violation(message).with_suggestion(format!(
                "{size} is an RSA size: set spec.privateKey.algorithm to \"RSA\", or use size 256 \
             for ECDSA"
            ))
        } else if effective == rsa && ecdsa.allowed_sizes().contains(&size) {
            violation(message).with_suggestion(format!(
                "{size} is an ECDSA size: set spec.privateKey.algorithm to \"ECDSA\", or use size \
             2048 for RSA"
            ))
        } else {
            // The next size up, so a request never becomes weaker than asked.
            let nearest = allowed
                .iter()
                .copied()
                .find(|&allowed| allowed >= size)
                .or_else(|| allowed.last().copied())
                .unwrap_or(size);
            violation(message).with_suggestion(format!("did you mean {nearest}?"))
        },
    )
}
