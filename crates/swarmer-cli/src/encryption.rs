//! The `--encryption` option of `download`, `seed` and the daemon, its saved form in the daemon's
//! settings, and Transmission's names for it (`required`, `preferred`, `tolerated`).

/// Message Stream Encryption of peer connections (MSE/PE).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub(crate) enum EncryptionMode {
    /// Encrypted first, plaintext when a peer refuses it; accept both.
    #[default]
    Prefer,
    /// RC4 only, both ways: never talk to a peer in plaintext.
    Require,
    /// Plaintext only: no encryption either way.
    Disable,
}

impl From<EncryptionMode> for swarmer::Encryption {
    fn from(mode: EncryptionMode) -> swarmer::Encryption {
        match mode {
            EncryptionMode::Prefer => swarmer::Encryption::Prefer,
            EncryptionMode::Require => swarmer::Encryption::Require,
            EncryptionMode::Disable => swarmer::Encryption::Disable,
        }
    }
}

impl EncryptionMode {
    /// Transmission's `encryption` session field. `tolerated` (plaintext preferred, encryption
    /// accepted) is the nearest to `disable`.
    pub(crate) fn transmission_name(self) -> &'static str {
        match self {
            EncryptionMode::Prefer => "preferred",
            EncryptionMode::Require => "required",
            EncryptionMode::Disable => "tolerated",
        }
    }

    /// The mode Transmission's `encryption` value names, if it is one of its three.
    pub(crate) fn from_transmission(name: &str) -> Option<EncryptionMode> {
        match name {
            "preferred" => Some(EncryptionMode::Prefer),
            "required" => Some(EncryptionMode::Require),
            "tolerated" => Some(EncryptionMode::Disable),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transmission_names_round_trip() {
        for mode in [
            EncryptionMode::Prefer,
            EncryptionMode::Require,
            EncryptionMode::Disable,
        ] {
            assert_eq!(
                EncryptionMode::from_transmission(mode.transmission_name()),
                Some(mode)
            );
        }
        assert_eq!(EncryptionMode::from_transmission("always"), None);
    }
}
